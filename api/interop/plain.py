"""reftag's own file shapes: JSON (`{"examples": [...]}`, as the API takes them), JSON Lines
(one `{"text", "label"}` or `{"text", "labels"}` object per line) and CSV (`text,label` or
`text,labels`), read as examples and written as results."""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..errors import ApiError
from ..requests import parse_json
from .document import ExportSpec, ReadOptions, Upload, csv_header, csv_rows, csv_writer, json_cell, json_lines


def read_json(text: str, options: ReadOptions) -> Upload:
    return Upload(parse_json(text))


def read_jsonl(text: str, options: ReadOptions) -> Upload:
    return Upload({"examples": json_lines(text, options.max_rows)})


def read_csv(text: str, options: ReadOptions) -> Upload:
    columns, rows = csv_rows(text, options.max_rows)
    if "text" not in columns or ("label" in columns) == ("labels" in columns):
        raise ApiError(422, "invalid_csv",
                       f"CSV header needs a `text` column and one of `label` or `labels`; got {columns}",
                       [{"pointer": "/columns", "columns": columns}])
    examples = []
    for i, row in enumerate(rows):
        if "labels" in row:
            row["labels"] = csv_labels(row["labels"] or "", i)
        examples.append({k: v for k, v in row.items() if k in ("text", "label", "labels") and v is not None})
    return Upload({"examples": examples})


def csv_labels(cell: str, row: int) -> Any:
    cell = cell.strip()
    if cell.startswith("["):
        try:
            return json_cell(cell, row, "labels")
        except ValueError:
            raise ApiError(400, "malformed_csv", f"labels cell is not a JSON list: {cell[:80]!r}") from None
    return [name.strip() for name in cell.split("|") if name.strip()]


def labels_cell(labels: list[str]) -> str:
    # `|`-joined, as the CSV reader splits it; a JSON list when a name itself holds a `|`
    return json.dumps(labels, ensure_ascii=False) if any("|" in name for name in labels) else "|".join(labels)


def write_jsonl(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    for r in results:
        yield json.dumps({"item_id": r["item_id"], "text": r["text"], **{k: v for k, v in r.items()
                          if k not in ("item_id", "text")}}, ensure_ascii=False) + "\n"


def write_csv(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """item_id, text, labels (`|`-joined), needs_review, adapter_version, error, then one
    `score:<label>` column per label in the set's order."""
    writer, flush = csv_writer()
    yield csv_header(writer, flush, ["item_id", "text", "labels", "needs_review", "adapter_version", "error"]
                     + [f"score:{name}" for name in spec.label_names], spec)
    for r in results:
        writer.writerow([r["item_id"], r["text"], labels_cell(r["labels"]), str(r["needs_review"]).lower(),
                         r["adapter_version"] if r["adapter_version"] is not None else "", r["error"] or ""]
                        + [r["scores"].get(name, "") for name in spec.label_names])
        yield flush()
