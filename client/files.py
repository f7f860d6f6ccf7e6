"""Files the CLI reads and writes: example uploads (passed to the API as they are), texts to
tag (read into job items), and result files (summarised after download). Always UTF-8."""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Content-Type of an examples upload, by file suffix; the API reads the body by it. Any other
# file goes up as it is with `--format NAME` (the API's `?format=`), e.g. an annotation tool's
# export.
EXAMPLE_MEDIA = {
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".csv": "text/csv",
}
RESULT_FORMATS = {".csv": "csv"}  # anything else is written as JSONL
SUMMARIZED = ("jsonl", "csv")  # the result formats whose files the CLI reads back for a summary


class InputError(Exception):
    """A file the CLI cannot use; the message names the file and the line."""


def read_bytes(path: str) -> bytes:
    if path == "-":
        import sys

        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None


def example_upload(path: str, file_format: str | None) -> tuple[bytes, str]:
    """(body, Content-Type) of an examples file. Without `file_format` the suffix must say
    what the file is."""
    media = EXAMPLE_MEDIA.get(Path(path).suffix.lower())
    if media is None and file_format is None:
        raise InputError(f"cannot tell the format of {path} from its name: use a .json, .jsonl or .csv file, "
                         "or name the format with --format")
    return read_bytes(path), media or "application/octet-stream"


def _text(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8: {e}") from None


def _item(row: Any, where: str, text_field: str, id_field: str) -> dict[str, Any]:
    if isinstance(row, str):
        return {"text": row}
    if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
        raise InputError(f"{where}: expected an object with a {text_field!r} string")
    item: dict[str, Any] = {"text": row[text_field]}
    if row.get(id_field) not in (None, ""):
        item["id"] = row[id_field] if isinstance(row[id_field], (str, int)) else str(row[id_field])
    if isinstance(row.get("meta"), dict):
        item["meta"] = row["meta"]
    return item


def read_items(path: str, text_field: str = "text", id_field: str = "id") -> list[dict[str, Any]]:
    """Texts to tag as job items `{"text", "id"?, "meta"?}`:

    - `.jsonl`: one object per line (`text`, optional `id` and `meta`; other fields such as a
      gold `label` are left out) or one JSON string per line;
    - `.json`: a list of such objects or strings, or `{"items": [...]}`;
    - `.csv`: a header row with `text` and optionally `id`;
    - anything else (`.txt`, `-` for stdin): one text per line, its id the line number.
    """
    text = _text(read_bytes(path), path)
    suffix = Path(path).suffix.lower()
    items: list[dict[str, Any]] = []
    if suffix in (".jsonl", ".ndjson"):
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise InputError(f"{path} line {number} is not JSON: {e}") from None
                items.append(_item(row, f"{path} line {number}", text_field, id_field))
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise InputError(f"{path} is not JSON: {e}") from None
        rows = data.get("items") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise InputError(f"{path}: expected a list of items or {{\"items\": [...]}}")
        items = [_item(row, f"{path} item {i}", text_field, id_field) for i, row in enumerate(rows)]
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if text_field not in (reader.fieldnames or []):
            raise InputError(f"{path}: the CSV header has no {text_field!r} column (it has {reader.fieldnames})")
        items = [_item(row, f"{path} line {reader.line_num}", text_field, id_field) for row in reader]
    else:
        items = [{"id": str(number), "text": line} for number, line in enumerate(text.split("\n"), start=1)
                 if line.strip()]
    if not items:
        raise InputError(f"{path} holds no texts")
    return items


def result_format(path: str) -> str:
    return RESULT_FORMATS.get(Path(path).suffix.lower(), "jsonl")


@dataclass
class ResultSummary:
    items: int = 0
    labels: Counter = field(default_factory=Counter)
    needs_review: int = 0
    failed: int = 0


def summarize_results(path: Path, file_format: str) -> ResultSummary:
    """Counts per label, needing review and failed, from a results file the API wrote."""
    summary = ResultSummary()
    with open(path, encoding="utf-8", newline="") as f:
        rows: Iterable[dict[str, Any]]
        if file_format == "csv":
            rows = ({"labels": _csv_labels(r["labels"]), "needs_review": r["needs_review"] == "true",
                     "error": r["error"] or None} for r in csv.DictReader(f))
        else:
            rows = (json.loads(line) for line in f if line.strip())
        for row in rows:
            summary.items += 1
            if row.get("error"):
                summary.failed += 1
                continue
            summary.labels.update(row["labels"])
            summary.needs_review += bool(row["needs_review"])
    return summary


def _csv_labels(cell: str) -> list[str]:
    # `a|b`, or a JSON list when a label name holds `|` (the API writes it either way)
    return json.loads(cell) if cell.startswith("[") else [name for name in cell.split("|") if name]
