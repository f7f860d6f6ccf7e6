"""File formats at the edge: example uploads (JSON, JSONL, CSV) and result exports (JSONL,
CSV). Readers turn a body into the same `{"examples": [...]}` document that JSON uploads send,
so one schema validates them all and a problem in row 3 is `/examples/3/...` in every format.
A new format (Label Studio is next) is one reader or writer plus one entry in the tables below.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Callable, Iterable

from flask import Request

from .errors import ApiError
from .schemas import json_body, reject_constant

EXAMPLE_MEDIA = {
    "application/x-ndjson": "JSONL: one {\"text\", \"label\"} or {\"text\", \"labels\"} object per line",
    "text/csv": "CSV with a header row: text,label or text,labels (labels `|`-separated or a JSON list)",
}
MEDIA_FORMATS = {
    "application/json": "json",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
    "application/jsonlines": "jsonl",
    "text/csv": "csv",
}


def request_text(request: Request) -> str:
    try:
        return request.get_data(cache=True).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ApiError(400, "malformed_body", f"body is not valid UTF-8: {e}") from None


def read_json(request: Request) -> Any:
    return json_body()


def read_jsonl(request: Request) -> dict[str, Any]:
    rows = []
    # split on "\n" only: str.splitlines() would also split inside texts holding U+2028 and friends
    for number, line in enumerate(request_text(request).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line, parse_constant=reject_constant))
        except (ValueError, RecursionError) as e:
            raise ApiError(400, "malformed_jsonl", f"line {number} is not valid JSON: {e}",
                           [{"line": number}]) from None
    return {"examples": rows}


def read_csv(request: Request) -> dict[str, Any]:
    reader = csv.DictReader(io.StringIO(request_text(request), newline=""))
    try:
        columns = reader.fieldnames or []
        if "text" not in columns or ("label" in columns) == ("labels" in columns):
            raise ApiError(422, "invalid_csv",
                           f"CSV header needs a `text` column and one of `label` or `labels`; got {columns}",
                           [{"pointer": "/columns", "columns": columns}])
        rows = []
        for row in reader:
            if "labels" in row:
                row["labels"] = csv_labels(row["labels"] or "")
            rows.append({k: v for k, v in row.items() if k in ("text", "label", "labels") and v is not None})
    except csv.Error as e:
        raise ApiError(400, "malformed_csv", f"CSV line {reader.line_num}: {e}") from None
    return {"examples": rows}


def csv_labels(cell: str) -> Any:
    cell = cell.strip()
    if cell.startswith("["):
        try:
            return json.loads(cell)
        except ValueError:
            raise ApiError(400, "malformed_csv", f"labels cell is not a JSON list: {cell[:80]!r}") from None
    return [name.strip() for name in cell.split("|") if name.strip()]


EXAMPLE_READERS: dict[str, Callable[[Request], Any]] = {"json": read_json, "jsonl": read_jsonl, "csv": read_csv}


def read_examples(request: Request) -> Any:
    """The upload as `{"examples": [...]}`, in the format named by `?format=` or Content-Type
    (JSON when neither says otherwise)."""
    name = request.args.get("format") or MEDIA_FORMATS.get(request.mimetype, "json")
    reader = EXAMPLE_READERS.get(name)
    if reader is None:
        raise ApiError(415, "unsupported_format",
                       f"format {name!r} is not supported for examples; use one of {sorted(EXAMPLE_READERS)}")
    return reader(request)


# --- result exports ---------------------------------------------------------------------------


def write_jsonl(results: Iterable[dict[str, Any]], label_names: list[str]) -> Iterable[str]:
    for result in results:
        yield json.dumps(result, ensure_ascii=False) + "\n"


def write_csv(results: Iterable[dict[str, Any]], label_names: list[str]) -> Iterable[str]:
    """item_id, labels (`|`-joined), needs_review, adapter_version, error, then one
    `score:<label>` column per label in the set's order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(["item_id", "labels", "needs_review", "adapter_version", "error"]
                    + [f"score:{name}" for name in label_names])
    yield flush()
    for r in results:
        writer.writerow([r["item_id"], "|".join(r["labels"]), str(r["needs_review"]).lower(),
                         r["adapter_version"] if r["adapter_version"] is not None else "", r["error"] or ""]
                        + [r["scores"].get(name, "") for name in label_names])
        yield flush()


RESULT_WRITERS: dict[str, tuple[str, Callable[[Iterable[dict[str, Any]], list[str]], Iterable[str]]]] = {
    "jsonl": ("application/x-ndjson", write_jsonl),
    "csv": ("text/csv; charset=utf-8", write_csv),
}
