"""Spans: labelled character ranges of a text (named entities and the like), and their BIO tags.

An example is `{"text": ..., "spans": [{"start", "end", "label"}, ...]}`; offsets count the
text's characters (Python's code points, not UTF-16 units), `end` exclusive. Spans must lie
inside the text, must not overlap, and carry a label of the label set (`validate_spans`).

A model sees tokens, not characters. Each token's character range comes from the fast
tokenizer's offset mapping (`align`), trimmed of whitespace and of the Metaspace mark `▁`
(XLM-R's pieces start at the space before a word); special tokens, the base's text prefix
("query: ") and whitespace-only pieces carry no characters and are no one's: only *content
tokens* get a tag, in the BIO scheme (`O`, `B-<label>` at a span's first token, `I-<label>` after).

**Boundaries inside a piece round to the nearest token boundary.** The multilingual base cuts
Chinese into multi-character pieces (我住在北京市 → ▁我 · 住在 · 北京市), so a span may start or end
inside one. A token belongs to a span when at least half of its characters are inside it; a
tie rounds outward, and when two spans each hold half a token, the earlier one takes it. So
北京 in 北京市 becomes the whole piece 北京市 (2 of 3 characters), 市 alone rounds to nothing and
is reported as dropped (`Tagged.dropped`), and a span on token boundaries is kept exactly.
Why: it moves each boundary by the fewest characters (never more than half a piece), treats
starts and ends alike, and gives every token one owner — where "any overlap" would let a
one-character span swallow a four-character piece, and "the token's first character" would
drop every span that starts inside a piece. Decoded spans (`spans_from_tags`) run from their
first token's first character to their last token's last one.

CoNLL-style token rows (`from_conll`: `tokens` + `tags`) become text by joining the tokens with
single spaces, but with none between two CJK tokens (Chinese is written without spaces).

Torch-free: the service's web tier validates and converts examples without a model library.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OUTSIDE = "O"
# A spans result needs review when some token's decoded tag is less likely than this (the default of
# a label set's span_review_threshold, and of span_decoding.decode).
DEFAULT_REVIEW_THRESHOLD = 0.5
_TRIM = " \t\n\r\f\v\u2581\u00a0\u3000"


class SpanError(ValueError):
    """One span of an example is invalid: `index` is its position in the example's list,
    `field` the key at fault (None: the span as a whole), `example` the example's index when
    a list of examples was checked. `pointer` is the JSON pointer to the culprit."""

    def __init__(self, index: int, field: str | None, message: str, example: int | None = None):
        self.index, self.field, self.message, self.example = index, field, message, example
        super().__init__(f"{self.pointer}: {message}")

    @property
    def pointer(self) -> str:
        where = "" if self.example is None else f"/{self.example}"
        return f"{where}/spans/{self.index}" + (f"/{self.field}" if self.field else "")

    def in_example(self, example: int) -> SpanError:
        return SpanError(self.index, self.field, self.message, example)


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int
    label: str

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "label": self.label}


@dataclass(frozen=True)
class ScoredSpan:
    """A span found by an adapter: its text, and `score`, the least probability among its
    tokens' tags (a span is only as sure as its least sure token)."""

    start: int
    end: int
    label: str
    text: str
    score: float

    @property
    def span(self) -> Span:
        return Span(self.start, self.end, self.label)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "label": self.label, "text": self.text,
                "score": round(self.score, 4)}


@dataclass
class SpanPrediction:
    """The spans an adapter found in one text. `needs_review` when some token's decoded tag
    (a span's or O) has a probability below the review threshold: an unsure span, or a likely
    span left out. `confidence` is that least probability."""

    spans: list[ScoredSpan]
    needs_review: bool
    confidence: float


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_spans(text: str, spans: Iterable[Span | Mapping[str, Any]], labels: Sequence[str]) -> list[Span]:
    """The example's spans as `Span`s, sorted by start; `SpanError` names the first bad one."""
    known = set(labels)
    checked: list[tuple[Span, int]] = []
    for i, raw in enumerate(spans):
        if isinstance(raw, Span):
            raw = raw.to_dict()
        if not isinstance(raw, Mapping):
            raise SpanError(i, None, "a span is an object with start, end and label")
        for key in ("start", "end", "label"):
            if key not in raw:
                raise SpanError(i, key, f"missing {key}")
        start, end, label = raw["start"], raw["end"], raw["label"]
        for key, value in (("start", start), ("end", end)):
            if not _is_int(value):
                raise SpanError(i, key, f"{key} must be an integer character offset, got {value!r}")
        if start < 0:
            raise SpanError(i, "start", f"start {start} is before the text")
        if end > len(text):
            raise SpanError(i, "end", f"end {end} is past the end of the text ({len(text)} characters)")
        if end <= start:
            raise SpanError(i, "end", f"end {end} must be greater than start {start} (end is exclusive)")
        if not isinstance(label, str) or label not in known:
            raise SpanError(i, "label", f"unknown label {label!r}; the label set has {sorted(known)}")
        checked.append((Span(start, end, label), i))
    checked.sort()
    for (a, ia), (b, ib) in zip(checked, checked[1:]):
        if b.start < a.end:
            raise SpanError(ib, None, f"overlaps span {ia} ({a.start}–{a.end} {a.label!r}); spans may not overlap")
    return [span for span, _ in checked]


# -- BIO tags ---------------------------------------------------------------------------------------
def bio_tags(labels: Sequence[str]) -> list[str]:
    """The tag set of a label set: O, then B-x and I-x for each label x, in the labels' order."""
    return [OUTSIDE] + [f"{prefix}-{label}" for label in labels for prefix in ("B", "I")]


def tag_parts(tag: str) -> tuple[str, str | None]:
    """"B-PER" → ("B", "PER"); "O" → ("O", None)."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, sep, label = tag.partition("-")
    if not sep or prefix not in ("B", "I") or not label:
        raise ValueError(f"not a BIO tag: {tag!r} (expected O, B-<label> or I-<label>)")
    return prefix, label


# -- tokens and characters --------------------------------------------------------------------------
@dataclass
class Alignment:
    """A text as the base model sees it: token ids (prefix and special tokens included), and for
    each token its character range in the text, trimmed; (0, 0) for a token that carries none.
    `content` lists the tokens that carry characters: the ones that get a tag."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    content: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.content:
            self.content = [i for i, (a, b) in enumerate(self.offsets) if b > a]


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start] in _TRIM:
        start += 1
    while end > start and text[end - 1] in _TRIM:
        end -= 1
    return (start, end) if end > start else (0, 0)


def align(tokenizer: Any, texts: Sequence[str], max_length: int, prefix: str = "") -> list[Alignment]:
    """Tokenize `prefix + text` as `Base.tokenize` does (same ids), keeping each token's range in
    `text`. Needs a fast tokenizer (one with an offset mapping)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("span labeling needs a fast tokenizer (with an offset mapping)")
    encoded = tokenizer([prefix + text for text in texts], truncation=True, max_length=max_length,
                        add_special_tokens=True, return_offsets_mapping=True)
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}  # an unknown token still covers text
    out = []
    for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"]):
        ranges = []
        for token, (a, b) in zip(ids, offsets):
            a, b = max(a - len(prefix), 0), max(b - len(prefix), 0)
            ranges.append((0, 0) if token in special or b <= a else _trim(text, a, b))
        out.append(Alignment(list(ids), ranges))
    return out


@dataclass
class Tagged:
    """A text's spans as tags of its content tokens, and the spans no token represents (too
    short to own half a piece, or past the cut at `max_length`)."""

    tags: list[str]
    dropped: list[Span]


def spans_to_tags(alignment: Alignment, spans: Sequence[Span]) -> Tagged:
    """BIO tags of the content tokens (rounding as the module docstring says)."""
    spans = sorted(spans)
    owner: list[int | None] = []
    j = 0
    for i in alignment.content:
        a, b = alignment.offsets[i]
        while j < len(spans) and spans[j].end <= a:
            j += 1
        best: int | None = None
        best_overlap = 0
        k = j
        while k < len(spans) and spans[k].start < b:
            overlap = min(b, spans[k].end) - max(a, spans[k].start)
            if 2 * overlap >= b - a and overlap > best_overlap:
                best, best_overlap = k, overlap
            k += 1
        owner.append(best)
    tags: list[str] = []
    previous: int | None = None
    for owned in owner:
        tags.append(OUTSIDE if owned is None else f"{'I' if owned == previous else 'B'}-{spans[owned].label}")
        previous = owned
    kept = set(owner)
    return Tagged(tags, [span for k, span in enumerate(spans) if k not in kept])


def tag_runs(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """(first, last, label) of each entity in a tag sequence (indices inclusive). An I-x that
    does not continue an x starts one (IOB1 rows and unconstrained decoders write those)."""
    runs: list[tuple[int, int, str]] = []
    current: list[Any] | None = None
    for i, tag in enumerate(tags):
        prefix, label = tag_parts(tag)
        if prefix == "I" and current is not None and current[2] == label and current[1] == i - 1:
            current[1] = i
            continue
        if current is not None:
            runs.append((current[0], current[1], current[2]))
            current = None
        if label is not None:
            current = [i, i, label]
    if current is not None:
        runs.append((current[0], current[1], current[2]))
    return runs


def spans_from_tags(alignment: Alignment, tags: Sequence[str]) -> list[Span]:
    """Spans of the content tokens' tags, from a run's first character to its last."""
    ranges = [alignment.offsets[i] for i in alignment.content]
    return [Span(ranges[first][0], ranges[last][1], label) for first, last, label in tag_runs(tags)]


# -- CoNLL / BIO token rows -----------------------------------------------------------------------------
# Scripts written without spaces between words: CJK ideographs (with extensions and compatibility
# forms), CJK symbols and punctuation (。、「」), kana, and full-width forms (，！（）).
_NO_SPACES = ((0x3000, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFF00, 0xFFEF),
              (0x20000, 0x3FFFF))


def is_cjk(char: str) -> bool:
    """A character of Chinese or Japanese text, which is written without spaces."""
    code = ord(char)
    return any(low <= code <= high for low, high in _NO_SPACES)


def from_conll(tokens: Sequence[str], tags: Sequence[str]) -> tuple[str, list[Span]]:
    """A row of `tokens` + BIO `tags` (CoNLL-2003: IOB2) as text + character spans: tokens joined
    by single spaces, or by nothing between two CJK tokens."""
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags")
    pieces, starts = [], []
    length = 0
    for i, token in enumerate(tokens):
        if not token:
            raise ValueError(f"token {i} is empty")
        if i and not (is_cjk(tokens[i - 1][-1]) and is_cjk(token[0])):
            pieces.append(" ")
            length += 1
        starts.append(length)
        pieces.append(token)
        length += len(token)
    return "".join(pieces), [Span(starts[first], starts[last] + len(tokens[last]), label)
                             for first, last, label in tag_runs(tags)]


def to_conll(text: str, spans: Iterable[Span | Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """A text + character spans as a row of `tokens` + BIO `tags` (the other way from
    `from_conll`): tokens are the text's runs of non-space characters, each CJK character a token
    of its own; a token takes the tag of the span holding at least half of its characters (the
    rounding of `spans_to_tags`). On single-space-joined tokens with spans on token boundaries,
    `from_conll(*to_conll(text, spans))` gives back the text and the spans."""
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    for i, char in enumerate(text):
        if char.isspace() or is_cjk(char):
            if start is not None:
                ranges.append((start, i))
                start = None
            if not char.isspace():
                ranges.append((i, i + 1))
        elif start is None:
            start = i
    if start is not None:
        ranges.append((start, len(text)))
    given = [s if isinstance(s, Span) else Span(s["start"], s["end"], s["label"]) for s in spans]
    tagged = spans_to_tags(Alignment(list(range(len(ranges))), ranges), given)
    return [text[a:b] for a, b in ranges], tagged.tags
