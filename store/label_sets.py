"""Label sets and their examples. Every function takes a `Session` and leaves the transaction
to the caller, so that a request's writes commit (or roll back) as one. Everything a tenant
owns is looked up through `tenant_id`: another tenant's id is simply not found."""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reft_core.bases import choose_base, name_of
from reft_core.spans import SpanError, validate_spans

from . import adapters
from .errors import MAX_DETAILS, Conflict, Invalid, NotFound
from .models import Adapter, Example, Label, LabelSet, LabelSetKind, utcnow


@dataclass
class LabelSetView:
    """A label set with what its API form needs beside the row."""

    label_set: LabelSet
    example_count: int
    active_adapter: Adapter | None


def create_label_set(
    session: Session,
    tenant_id: str,
    name: str,
    labels: Sequence[tuple[str, str | None]],
    multi_label: bool = False,
    config: dict[str, Any] | None = None,
    base_model: str = "auto",
    review_precision: float | None = None,
    retrain_after: int | None = 50,
    kind: str = LabelSetKind.CLASSIFICATION,
) -> LabelSetView:
    """`labels` are (name, description) pairs, in score-vector order; the API has checked that
    there are enough (two to classify, one type of span), that names are distinct, and that
    `base_model` is "auto" or a base the service has."""
    if session.scalar(select(LabelSet.id).where(LabelSet.tenant_id == tenant_id, LabelSet.name == name)):
        raise Conflict(f"a label set named {name!r} already exists", [{"pointer": "/name"}], code="label_set_exists")
    label_set = LabelSet(tenant_id=tenant_id, name=name, multi_label=multi_label, config=config or {},
                         base_model=base_model, review_precision=review_precision, retrain_after=retrain_after,
                         kind=LabelSetKind(kind))
    label_set.labels = [Label(name=n, description=d, position=i) for i, (n, d) in enumerate(labels)]
    session.add(label_set)
    try:
        session.flush()
    except IntegrityError:  # a concurrent request created the same name first
        raise Conflict(f"a label set named {name!r} already exists", [{"pointer": "/name"}],
                       code="label_set_exists") from None
    return LabelSetView(label_set, 0, None)


def label_set_row(session: Session, tenant_id: str, label_set_id: str, lock: bool = False) -> LabelSet:
    """The tenant's label set or NotFound; `lock` holds its row until commit (PostgreSQL; SQLite
    transactions here are serialized anyway) so that checks made under it stay true."""
    query = select(LabelSet).where(LabelSet.id == label_set_id, LabelSet.tenant_id == tenant_id)
    label_set = session.scalar(query.with_for_update() if lock else query)
    if label_set is None:
        raise NotFound(f"label set {label_set_id!r} not found")
    return label_set


def set_base_model(session: Session, tenant_id: str, label_set_id: str, base_model: str) -> LabelSetView:
    """Train the set's next versions on another base ("auto": chosen again from the examples at
    the next training). Versions already trained keep serving until a new one is promoted."""
    label_set = label_set_row(session, tenant_id, label_set_id, lock=True)
    label_set.base_model = base_model
    label_set.base_model_resolved = None  # resolved again at the next train request
    session.flush()
    return get_label_set(session, tenant_id, label_set_id)


def set_review_precision(session: Session, tenant_id: str, label_set_id: str, precision: float | None) -> None:
    """Auto-accept at this precision (None: off) in tag jobs submitted from now on."""
    label_set_row(session, tenant_id, label_set_id, lock=True).review_precision = precision
    session.flush()


def set_span_review_threshold(session: Session, tenant_id: str, label_set_id: str, threshold: float) -> None:
    """Spans sets: results with a token less sure than this need review, in tag jobs submitted
    from now on."""
    label_set = label_set_row(session, tenant_id, label_set_id, lock=True)
    if label_set.kind != LabelSetKind.SPANS:
        raise Invalid("span_review_threshold is for spans label sets; a classification set's results need review "
                      "by review_precision", [{"pointer": "/span_review_threshold"}], code="not_a_spans_label_set")
    label_set.span_review_threshold = threshold
    session.flush()


def require_kind(label_set: LabelSet, kind: str, what: str) -> None:
    """Invalid (naming `what`) unless the set is of this kind: the labeling loop's suggest,
    audit and review answer whole-text labels, not spans."""
    if label_set.kind != kind:
        raise Invalid(f"{what} is for {kind} label sets; label set {label_set.id!r} labels {label_set.kind}",
                      [{"label_set_id": label_set.id, "kind": label_set.kind}], code=f"not_for_{label_set.kind}")


def set_retrain_after(session: Session, tenant_id: str, label_set_id: str, count: int | None) -> None:
    """Queue a train job once this many examples changed since the latest training (None: off)."""
    label_set_row(session, tenant_id, label_set_id, lock=True).retrain_after = count
    session.flush()


def resolve_base_model(session: Session, label_set: LabelSet, english: str) -> str:
    """The base the set trains on: the one already resolved, the one it names, or for "auto"
    the one its examples' script calls for (`english`, a bundled base's name or BASE_MODEL's
    directory, for Latin-script text). Recorded on the set, by name."""
    if label_set.base_model_resolved is None:
        if label_set.base_model == "auto":
            texts = session.scalars(select(Example.text).where(Example.label_set_id == label_set.id))
            label_set.base_model_resolved = choose_base(texts, english=name_of(english))
        else:
            label_set.base_model_resolved = label_set.base_model
    return label_set.base_model_resolved


def example_count(session: Session, label_set_id: str) -> int:
    return session.scalar(select(func.count()).select_from(Example).where(Example.label_set_id == label_set_id)) or 0


def get_label_set(session: Session, tenant_id: str, label_set_id: str) -> LabelSetView:
    label_set = label_set_row(session, tenant_id, label_set_id)
    return LabelSetView(label_set, example_count(session, label_set.id), adapters.active_adapter(session, label_set.id))


def list_label_sets(session: Session, tenant_id: str) -> list[LabelSetView]:
    label_sets = session.scalars(
        select(LabelSet).where(LabelSet.tenant_id == tenant_id).order_by(LabelSet.created_at, LabelSet.id)
    ).all()
    ids = [ls.id for ls in label_sets]
    counts = dict(session.execute(
        select(Example.label_set_id, func.count()).where(Example.label_set_id.in_(ids)).group_by(Example.label_set_id)
    ).all())
    actives = adapters.active_adapters(session, ids)
    return [LabelSetView(ls, counts.get(ls.id, 0), actives.get(ls.id)) for ls in label_sets]


# --- examples ---------------------------------------------------------------------------------


@dataclass
class ExamplesAdded:
    added: int
    duplicates: int
    rejected: list[dict[str, Any]] = field(default_factory=list)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Evaluation examples: about this share of the examples, given when each is added and never
# changed, so that versions trained months apart are scored on the same rows. A label keeps its
# first MIN_TRAINING_PER_LABEL examples for training, however the draw falls.
EVAL_SHARE = 0.15
MIN_TRAINING_PER_LABEL = 4


def evaluation_marks(label_set_id: str, trained: Counter[str], new: Sequence[tuple[str, list[str]]]) -> list[bool]:
    """Whether each new (text hash, labels) is an evaluation example: a draw from the hash of the
    set and the text (the same text, the same draw, whatever the order), below EVAL_SHARE, and
    every label it carries already has MIN_TRAINING_PER_LABEL training examples. `trained` (the
    set's training examples per label) is brought up to date as the new ones are marked."""
    marks = []
    for digest, names in new:
        draw = int(hashlib.sha256(f"{label_set_id}:{digest}".encode()).hexdigest()[:8], 16) / 2**32
        mark = draw < EVAL_SHARE and all(trained[name] >= MIN_TRAINING_PER_LABEL for name in names)
        if not mark:
            trained.update(names)
        marks.append(mark)
    return marks


class NewExample(NamedTuple):
    """An example to add: its text and labels; for a spans set, `spans` (`{"start", "end",
    "label"}` each) and no labels (they are the spans' types)."""

    text: str
    labels: list[str]
    spans: list[Any] | None = None


def check_example_labels(label_set: LabelSet, examples: Sequence[tuple[Any, ...]]) -> list[list[dict[str, Any]]]:
    """Any row naming an unknown label — more than one label in a single-label set, labels where
    the set wants spans or spans where it wants labels, a span off the text or overlapping
    another — is an Invalid listing every bad row (a spans row: its first bad span). Returns
    each row's spans, checked and in order (empty lists for a classification set)."""
    known = {label.name for label in label_set.labels}
    spans_set = label_set.kind == LabelSetKind.SPANS
    names_in_order = label_set_names(label_set)
    problems: list[dict[str, Any]] = []
    checked: list[list[dict[str, Any]]] = []
    for index, row in enumerate(map(lambda e: NewExample(*e), examples)):
        if spans_set:
            checked.append([])
            if row.spans is None:
                problems.append({"pointer": f"/examples/{index}/spans", "message": "a spans label set needs "
                                 "`spans` ([{\"start\", \"end\", \"label\"}], [] for a text with none), not labels"})
                continue
            try:
                checked[-1] = [span.to_dict() for span in validate_spans(row.text, row.spans, names_in_order)]
            except SpanError as e:
                problems.append({"pointer": f"/examples/{index}{e.pointer}", "message": e.message,
                                 **({"label": row.spans[e.index].get("label")} if e.field == "label"
                                    and isinstance(row.spans[e.index], dict) else {})})
            continue
        checked.append([])
        if row.spans is not None:
            problems.append({"pointer": f"/examples/{index}/spans", "message": "this label set labels whole "
                             "texts (kind classification): give `label` or `labels`, not spans"})
            continue
        names = row.labels
        if not label_set.multi_label and len(names) != 1:
            problems.append({"pointer": f"/examples/{index}/label",
                             "message": f"a single-label set needs exactly one label, got {len(names)}"})
        for j, name in enumerate(names):
            if name not in known:
                pointer = f"/examples/{index}/labels/{j}" if label_set.multi_label else f"/examples/{index}/label"
                problems.append({"pointer": pointer, "message": f"unknown label {name!r}", "label": name})
    if problems:
        unknown = sorted({p["label"] for p in problems if isinstance(p.get("label"), str)
                          and p["label"] not in known})
        named = f"; unknown labels: {', '.join(map(repr, unknown[:20]))}" if unknown else ""
        listed = f", the first {MAX_DETAILS} listed" if len(problems) > MAX_DETAILS else ""
        raise Invalid(f"{len(problems)} problem(s) in the examples{listed}, nothing was stored{named} "
                      f"(the set's labels: {', '.join(label.name for label in label_set.labels[:50])})",
                      problems[:MAX_DETAILS], code="invalid_examples")
    return checked


def label_set_names(label_set: LabelSet) -> list[str]:
    return [label.name for label in label_set.labels]


def span_types(label_set: LabelSet, spans: Sequence[dict[str, Any]]) -> list[str]:
    """The distinct labels of a text's spans, in the set's order (what `Example.labels` holds)."""
    present = {span["label"] for span in spans}
    return [name for name in label_set_names(label_set) if name in present]


def add_examples(
    session: Session, tenant_id: str, label_set_id: str, examples: Sequence[tuple[Any, ...]]
) -> ExamplesAdded:
    """Add (text, label names) pairs — `NewExample`s with spans to a spans set. A text already
    in the set (or earlier in the same request) counts as a duplicate and keeps its first labels.
    Any bad row (`check_example_labels`) rejects the whole request, every bad row listed."""
    label_set = label_set_row(session, tenant_id, label_set_id)
    checked = check_example_labels(label_set, examples)
    spans_set = label_set.kind == LabelSetKind.SPANS
    by_hash: dict[str, tuple[str, list[str], list[Any] | None]] = {}
    for row, spans in zip(map(lambda e: NewExample(*e), examples), checked):
        names = span_types(label_set, spans) if spans_set else list(dict.fromkeys(row.labels))
        by_hash.setdefault(text_hash(row.text), (row.text, names, spans if spans_set else None))
    existing: set[str] = set()
    hashes = list(by_hash)
    for start in range(0, len(hashes), 500):
        existing.update(session.scalars(select(Example.text_hash).where(
            Example.label_set_id == label_set.id, Example.text_hash.in_(hashes[start:start + 500]))))
    new = [(h, text, names, spans) for h, (text, names, spans) in by_hash.items() if h not in existing]
    marks = evaluation_marks(label_set.id, training_counts(session, label_set.id),
                             [(h, names) for h, _, names, _ in new])
    now = utcnow()
    rows = [{"label_set_id": label_set.id, "text": text, "text_hash": h, "labels": names, "spans": spans,
             "evaluation": mark, "created_at": now, "updated_at": now}
            for (h, text, names, spans), mark in zip(new, marks)]
    if rows:
        try:
            session.execute(insert(Example), rows)
        except IntegrityError:  # a concurrent upload stored some of the same texts first
            raise Conflict("another upload to this label set stored some of these texts at the same time; "
                           "send the request again (texts already stored count as duplicates)",
                           code="concurrent_upload") from None
    return ExamplesAdded(added=len(rows), duplicates=len(examples) - len(rows))


def relabel_example(session: Session, tenant_id: str, label_set_id: str, text: str, labels: Sequence[str]) -> bool:
    """Give the stored example of `text` these labels (a person corrected them; the names were
    checked by add_examples). True when they changed."""
    label_set = label_set_row(session, tenant_id, label_set_id)
    example = session.scalar(select(Example).where(Example.label_set_id == label_set.id,
                                                   Example.text_hash == text_hash(text)))
    names = list(dict.fromkeys(labels))
    if example is None or example.labels == names:
        return False
    example.labels = names
    return True


def training_counts(session: Session, label_set_id: str) -> Counter[str]:
    """How many training (not evaluation) examples carry each label."""
    counts: Counter[str] = Counter()
    for names in session.scalars(select(Example.labels).where(Example.label_set_id == label_set_id,
                                                              Example.evaluation.is_(False))):
        counts.update(names)
    return counts


def label_example_counts(session: Session, label_set: LabelSet) -> dict[str, int]:
    """How many examples carry each label (every label of the set, zero included)."""
    counts: Counter[str] = Counter()
    for names in session.scalars(select(Example.labels).where(Example.label_set_id == label_set.id)):
        counts.update(names)
    return {label.name: counts.get(label.name, 0) for label in label_set.labels}


@dataclass(frozen=True)
class TrainingExamples:
    """Every example of a set, oldest first: texts, labels as training takes them (one name per
    text for single-label sets, a list of names for multi-label ones, the spans of a spans set),
    evaluation marks."""

    texts: list[str]
    labels: list[Any]
    evaluation: list[bool]
    ids: list[int] = field(default_factory=list)


def training_examples(session: Session, label_set: LabelSet) -> TrainingExamples:
    rows = session.execute(
        select(Example.id, Example.text, Example.labels, Example.spans, Example.evaluation)
        .where(Example.label_set_id == label_set.id).order_by(Example.id)
    ).all()
    if label_set.kind == LabelSetKind.SPANS:
        labels: list[Any] = [list(r.spans or []) for r in rows]
    else:
        labels = [list(r.labels) if label_set.multi_label else r.labels[0] for r in rows]
    return TrainingExamples([r.text for r in rows], labels, [bool(r.evaluation) for r in rows], [r.id for r in rows])


def relabel(example: Example, labels: list[str], by: str | None, why: str) -> None:
    """Give an example new labels, keeping the ones it had in its `history` (with when they
    ended, who changed them — an API key's prefix — and why). No change, no history."""
    if list(example.labels) == list(labels):
        return
    example.history = [*(example.history or []),
                       {"labels": list(example.labels), "until": utcnow().isoformat(), "by": by, "why": why}]
    example.labels = list(labels)
