"""doccano's JSONL: text classification (`{"text", "label": ["a", ...]}` per line) and sequence
labeling (`{"text", "label": [[start, end, "TYPE"], ...]}`, or doccano 1.8's `{"text",
"entities": [{"start_offset", "end_offset", "label"}]}`; character offsets, end exclusive, as
reftag counts them), read as examples and written as results (with the item's id)."""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from store.models import LabelSetKind

from .document import ExportSpec, ReadOptions, Upload, json_lines, labelled, malformed


def is_span_row(row: Any) -> bool:
    """A sequence-labeling row: it has `entities`, or its `label` list holds lists (triples)."""
    if not isinstance(row, dict):
        return False
    label = row.get("label", row.get("labels"))
    return "entities" in row or (isinstance(label, list) and any(isinstance(x, list) for x in label))


def read(text: str, options: ReadOptions) -> Upload:
    """Classification: `label` may also be one string; an empty `label` list is an unlabelled
    row. When any row holds spans, every row does: an empty `label` list is then a text with no
    span, and a row with an `error` (a failed item of reftag's own export) is left out. Other
    keys are ignored."""
    rows = json_lines(text, options.max_rows)
    if any(is_span_row(row) for row in rows):
        return read_spans(rows)
    examples: list[dict[str, Any] | None] = []
    reasons: list[str | None] = []
    problems = []
    for i, row in enumerate(rows):
        label = row.get("label", row.get("labels")) if isinstance(row, dict) else None
        if not isinstance(row, dict) or label is None:
            problems.append({"pointer": f"/examples/{i}", "message": "expected {\"text\", \"label\": [...]}"})
            label = []
        names = [label] if isinstance(label, str) else label
        examples.append({"text": row.get("text"), "labels": names} if names else None)
        reasons.append(None if names else "no label (empty `label` list)")
    malformed(problems)
    return labelled(examples, reasons)


def read_spans(rows: list[Any]) -> Upload:
    examples: list[dict[str, Any] | None] = []
    reasons: list[str | None] = []
    problems: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if isinstance(row, dict) and row.get("error") is not None:
            examples.append(None)
            reasons.append(f"the item was not tagged: {str(row['error'])[:200]}")
            continue
        spans = row_spans(row, i, problems)
        examples.append({"text": row.get("text"), "spans": spans} if isinstance(row, dict) else None)
        reasons.append(None)
    malformed(problems)
    return labelled(examples, reasons)


def row_spans(row: Any, i: int, problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Row i's spans; what is malformed goes to `problems`, at its pointer."""
    if not isinstance(row, dict):
        problems.append({"pointer": f"/examples/{i}", "message": "expected {\"text\", \"label\": [[start, end, "
                                                                 "\"TYPE\"], ...]}"})
        return []
    key = "entities" if "entities" in row else "label" if "label" in row else "labels"
    given = row.get(key)
    if not isinstance(given, list):
        problems.append({"pointer": f"/examples/{i}/{key}", "message": f"`{key}` is a list of spans"})
        return []
    spans = []
    for j, span in enumerate(given):
        if key == "entities" and isinstance(span, dict):
            start, end, label = span.get("start_offset"), span.get("end_offset"), span.get("label")
        elif key != "entities" and isinstance(span, list) and len(span) == 3:
            start, end, label = span
        else:
            start = end = label = None
        if not (is_offset(start) and is_offset(end) and isinstance(label, str)):
            shape = ('{"start_offset": int, "end_offset": int, "label": "TYPE"}' if key == "entities"
                     else '[start, end, "TYPE"]')
            problems.append({"pointer": f"/examples/{i}/{key}/{j}", "message": f"a span is {shape}"})
            continue
        spans.append({"start": start, "end": end, "label": label})
    return spans


def is_offset(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def write(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """`{"text", "label": [...], "item_id"}` per line: the labels, or for a spans set the spans
    as `[start, end, "TYPE"]` (and the `error` of an item that was not tagged)."""
    for r in results:
        if spec.kind == LabelSetKind.SPANS:
            row = {"text": r["text"], "label": [[s["start"], s["end"], s["label"]] for s in r.get("spans") or []],
                   "item_id": r["item_id"], **({"error": r["error"]} if r["error"] is not None else {})}
        else:
            row = {"text": r["text"], "label": r["labels"], "item_id": r["item_id"]}
        yield json.dumps(row, ensure_ascii=False) + "\n"
