"""doccano's text-classification JSONL: `{"text", "label": [...]}` per line, read as examples
and written as results (with the item's id)."""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .document import ExportSpec, ReadOptions, Upload, json_lines, labelled, malformed


def read(text: str, options: ReadOptions) -> Upload:
    """`label` may also be one string; other keys are ignored. An empty `label` list is an
    unlabelled row."""
    examples: list[dict[str, Any] | None] = []
    reasons: list[str | None] = []
    problems = []
    for i, row in enumerate(json_lines(text, options.max_rows)):
        label = row.get("label", row.get("labels")) if isinstance(row, dict) else None
        if not isinstance(row, dict) or label is None:
            problems.append({"pointer": f"/examples/{i}", "message": "expected {\"text\", \"label\": [...]}"})
            label = []
        names = [label] if isinstance(label, str) else label
        examples.append({"text": row.get("text"), "labels": names} if names else None)
        reasons.append(None if names else "no label (empty `label` list)")
    malformed(problems)
    return labelled(examples, reasons)


def write(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """`{"text", "label": [...], "item_id"}` per line."""
    for r in results:
        yield json.dumps({"text": r["text"], "label": r["labels"], "item_id": r["item_id"]}, ensure_ascii=False) + "\n"
