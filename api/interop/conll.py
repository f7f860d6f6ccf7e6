"""CoNLL / BIO token rows, the shape of NER corpora (CoNLL-2003 and its kin): a sentence as its
tokens and one BIO tag per token (`O`, `B-TYPE` at an entity's first token, `I-TYPE` after).

Read either as JSON Lines, one `{"tokens": [...], "tags": [...]}` per sentence, or as the
classic column text: one token per line with its tag in the last column (other columns, such
as part of speech, are ignored), a blank line between sentences, `-DOCSTART-` lines skipped. A
row (a line of JSONL, a sentence of column text, counted from 0) becomes a span example:
tokens joined by single spaces, none between two CJK tokens (`reft_core.spans.from_conll`).
Results are written as JSONL, `{"item_id", "tokens", "tags"}` per item
(`reft_core.spans.to_conll`: tokens are the text's runs of non-space characters, each CJK
character its own)."""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from reft_core.spans import from_conll, tag_parts, to_conll

from .document import ExportSpec, ReadOptions, Upload, json_lines, labelled, malformed, too_many_rows

DOCSTART = "-DOCSTART-"


def read(text: str, options: ReadOptions) -> Upload:
    """A row with an `error` (an item of reftag's own export that was not tagged) is left out."""
    problems: list[dict[str, Any]] = []
    is_jsonl = text.lstrip().startswith("{")
    rows = json_lines(text, options.max_rows) if is_jsonl else column_rows(text, options.max_rows, problems)
    examples: list[dict[str, Any] | None] = []
    reasons: list[str | None] = []
    for i, row in enumerate(rows):
        if isinstance(row, dict) and row.get("error") is not None:
            examples.append(None)
            reasons.append(f"the item was not tagged: {str(row['error'])[:200]}")
            continue
        examples.append(row_example(row, i, problems))
        reasons.append(None)
    malformed(problems)
    return labelled(examples, reasons)


def column_rows(text: str, max_rows: int | None, problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sentences of column text as `{"tokens", "tags"}`; a line without a tag column goes to
    `problems`, with its line number."""
    rows: list[dict[str, Any]] = []
    tokens: list[str] = []
    tags: list[str] = []

    def end_sentence() -> None:
        nonlocal tokens, tags
        if tokens:
            if max_rows is not None and len(rows) == max_rows:
                raise too_many_rows(max_rows)
            rows.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []

    for number, line in enumerate(text.split("\n"), start=1):
        cells = line.split()
        if not cells or cells[0] == DOCSTART:
            end_sentence()
        elif len(cells) == 1:
            problems.append({"pointer": f"/examples/{len(rows)}/tags/{len(tokens)}", "line": number,
                             "message": f"line {number} has a token and no tag (expected `token ... TAG`)"})
        else:
            tokens.append(cells[0])
            tags.append(cells[-1])
    end_sentence()
    return rows


def row_example(row: Any, i: int, problems: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Row i as `{"text", "spans"}`; None, with its problems added, when it is malformed."""
    at = f"/examples/{i}"
    if not isinstance(row, dict):
        problems.append({"pointer": at, "message": 'expected {"tokens": [...], "tags": [...]}'})
        return None
    tokens, tags = row.get("tokens"), row.get("tags")
    found = len(problems)
    for key, values in (("tokens", tokens), ("tags", tags)):
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            problems.append({"pointer": f"{at}/{key}", "message": f"`{key}` is a non-empty list of strings"})
    if len(problems) > found:
        return None
    assert isinstance(tokens, list) and isinstance(tags, list)
    if len(tokens) != len(tags):
        problems.append({"pointer": f"{at}/tags", "message": f"{len(tokens)} tokens but {len(tags)} tags"})
        return None
    for j, token in enumerate(tokens):
        if not token.strip():
            problems.append({"pointer": f"{at}/tokens/{j}", "message": "a token may not be empty or blank"})
    for j, tag in enumerate(tags):
        try:
            tag_parts(tag)
        except ValueError as e:
            problems.append({"pointer": f"{at}/tags/{j}", "message": str(e)})
    if len(problems) > found:
        return None
    text, spans = from_conll(tokens, tags)
    return {"text": text, "spans": [span.to_dict() for span in spans]}


def write(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """`{"item_id", "tokens", "tags"}` per line (and the `error` of an item that was not tagged)."""
    for r in results:
        tokens, tags = to_conll(r["text"], r.get("spans") or [])
        row = {"item_id": r["item_id"], "tokens": tokens, "tags": tags,
               **({"error": r["error"]} if r["error"] is not None else {})}
        yield json.dumps(row, ensure_ascii=False) + "\n"
