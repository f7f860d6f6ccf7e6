"""reftag's own file shapes: JSON (`{"examples": [...]}`, as the API takes them), JSON Lines
(one `{"text", "label"}`, `{"text", "labels"}` or `{"text", "spans"}` object per line) and CSV
(`text,label` or `text,labels`; for spans one row per span, `text,start,end,label`), read as
examples and written as results."""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from store.models import LabelSetKind

from ..errors import ApiError
from ..requests import parse_json
from .document import (
    ExportSpec,
    ReadOptions,
    Upload,
    csv_header,
    csv_rows,
    csv_writer,
    json_cell,
    json_lines,
    labelled,
    malformed,
)

SPAN_COLUMNS = ("start", "end")  # a CSV with these columns holds spans, one per row


def read_json(text: str, options: ReadOptions) -> Upload:
    return Upload(parse_json(text))


def read_jsonl(text: str, options: ReadOptions) -> Upload:
    """A row with `spans` is a span example: its `labels`, the spans' types (as results carry
    them), are left out, so that an export reads back."""
    return Upload({"examples": [{k: v for k, v in row.items() if k not in ("label", "labels")}
                                if isinstance(row, dict) and "spans" in row else row
                                for row in json_lines(text, options.max_rows)]})


def read_csv(text: str, options: ReadOptions) -> Upload:
    columns, rows = csv_rows(text, options.max_rows)
    if all(column in columns for column in SPAN_COLUMNS):
        return read_span_csv(columns, rows)
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


def read_span_csv(columns: list[str], rows: list[dict[str, Any]]) -> Upload:
    """One row per span, as `write_csv` writes a spans set's results: consecutive rows of the
    same text (and `item_id`, when there is that column) are one example; a row with empty
    start, end and label is a text with no span, and a row with an `error` an item that was not
    tagged (left out). Problems point at the CSV row; the store's, at an example's first row."""
    if "text" not in columns or "label" not in columns:
        raise ApiError(422, "invalid_csv", f"a spans CSV needs the columns text, start, end and label; got {columns}",
                       [{"pointer": "/columns", "columns": columns}])
    examples: list[dict[str, Any] | None] = []
    reasons: list[str | None] = []
    problems = []
    previous: tuple[Any, Any] | None = None
    example: dict[str, Any] = {}
    for i, row in enumerate(rows):
        if row.get("error"):
            examples.append(None)
            reasons.append(f"the item was not tagged: {row['error'][:200]}")
            previous = None
            continue
        key = (row.get("item_id"), row["text"])
        if key != previous:
            example = {"text": row["text"], "spans": []}
            examples.append(example)
            previous = key
        else:  # a further span of the example above: this row is no example of its own
            examples.append(None)
        reasons.append(None)
        cells = [(row[c] or "").strip() for c in ("start", "end", "label")]
        if not any(cells):
            continue
        offsets = [int(cell) if cell.isascii() and cell.isdigit() else None for cell in cells[:2]]
        for column, value in zip(SPAN_COLUMNS, offsets, strict=True):
            if value is None:
                problems.append({"pointer": f"/examples/{i}/{column}", "message": f"{column} is a character "
                                 f"offset (a whole number ≥ 0); got {row[column]!r}"})
        if not cells[2]:
            problems.append({"pointer": f"/examples/{i}/label", "message": "a span row names its label"})
        if None not in offsets and cells[2]:
            example["spans"].append({"start": offsets[0], "end": offsets[1], "label": cells[2]})
    malformed(problems)
    return labelled(examples, reasons)


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
    `score:<label>` column per label in the set's order. For a spans set, one row per span."""
    if spec.kind == LabelSetKind.SPANS:
        yield from write_span_csv(results, spec)
        return
    writer, flush = csv_writer()
    yield csv_header(writer, flush, ["item_id", "text", "labels", "needs_review", "adapter_version", "error"]
                     + [f"score:{name}" for name in spec.label_names], spec)
    for r in results:
        writer.writerow([r["item_id"], r["text"], labels_cell(r["labels"]), str(r["needs_review"]).lower(),
                         r["adapter_version"] if r["adapter_version"] is not None else "", r["error"] or ""]
                        + [r["scores"].get(name, "") for name in spec.label_names])
        yield flush()


def write_span_csv(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """item_id, text, start, end, label, span_text, score, needs_review, adapter_version, error:
    one row per span, and one with empty span cells for a result with none, so that every item
    has a row."""
    writer, flush = csv_writer()
    yield csv_header(writer, flush, ["item_id", "text", "start", "end", "label", "span_text", "score",
                                     "needs_review", "adapter_version", "error"], spec)
    for r in results:
        item = [r["item_id"], r["text"]]
        about = [str(r["needs_review"]).lower(), r["adapter_version"] if r["adapter_version"] is not None else "",
                 r["error"] or ""]
        spans = r.get("spans") or []
        for span in spans:
            writer.writerow(item + [span["start"], span["end"], span["label"], r["text"][span["start"]:span["end"]],
                                    span.get("score", "")] + about)
        if not spans:
            writer.writerow(item + ["", "", "", "", ""] + about)
        yield flush()
