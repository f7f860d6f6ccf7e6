"""What every tool's reader and writer shares.

Readers turn an upload's text into an `Upload`: the same `{"examples": [...]}` document that
JSON uploads send, so one schema validates them all and a problem in row 3 is `/examples/3/...`
in every format (row = line, CSV data row, Label Studio task or Argilla record, counted from 0).
An example is `{"text", "label"}` or `{"text", "labels"}`, or, when the rows hold spans (Label
Studio `labels` results, doccano offsets, CoNLL tags), `{"text", "spans": [{"start", "end",
"label"}]}` with Python character offsets, end exclusive (`[]`: a text with no span). Readers do
not know the label set's kind: the store refuses examples of the other kind, and checks offsets.
A row that carries no label at all — a Label Studio task nobody annotated, or whose annotations
were all skipped — is not an error: it is left out and listed in the answer's `rejected`, with
its row and the reason. A malformed row or an unknown label rejects the whole upload (422, one
detail per row), as for JSON.

Writers turn a job's results, each with the text of its item, into chunks of text to stream;
an export reads back in as examples.
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from store.errors import StoreError

from ..errors import ApiError, invalid
from ..requests import MAX_JSON_DEPTH, NESTED_TOO_DEEP, parse_json, reject_constant, too_deep


@dataclass(frozen=True)
class ReadOptions:
    """Query parameters of an upload in a tool's format (every one optional)."""

    text_field: str | None = None  # the text's key: Label Studio `data` key, JSON-MIN/CSV column, Argilla field
    label_field: str | None = None  # Label Studio <Choices> name (from_name), JSON-MIN/CSV column, Argilla question
    labels_from: str = "annotations"  # "annotations" (people's: LS annotations, Argilla responses) or "predictions"
    max_rows: int | None = None  # REFTAG_MAX_EXAMPLES: an upload with more rows is refused before they are read


def too_many_rows(limit: int) -> ApiError:
    return ApiError(413, "too_many_examples", f"more than {limit} rows in one upload; the limit is {limit} "
                    "(REFTAG_MAX_EXAMPLES)", [{"pointer": "/examples", "message": f"at most {limit} rows",
                                               "limit": limit}])


@dataclass
class Upload:
    """An upload read into `{"examples": [...]}`. `rows[k]` is the source row of example k when
    rows were left out (`skipped`: `{"index", "reason"}` each); None when every row is there."""

    document: Any
    rows: list[int] | None = None
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def source_pointer(self, text: str) -> str:
        if self.rows is None:
            return text
        rows = self.rows

        def source(match: re.Match) -> str:
            k = int(match.group(1))
            return f"/examples/{rows[k]}" if k < len(rows) else match.group(0)

        return re.sub(r"/examples/(\d+)", source, text)

    @contextmanager
    def errors_at_source_rows(self) -> Iterator[None]:
        """Errors raised inside (validation, unknown labels) name the rows of the upload as sent."""
        try:
            yield
        except (ApiError, StoreError) as e:
            e.message = self.source_pointer(e.message)
            e.details = [{**d, "pointer": self.source_pointer(d["pointer"])} if isinstance(d.get("pointer"), str)
                         else d for d in e.details]
            raise


@dataclass(frozen=True)
class ExportSpec:
    """What a writer needs beside the rows: the set's labels (score-vector order), its kind
    ("classification", or "spans": results then carry `spans`), and where the text and label go
    in the tool's format (query parameters of the export)."""

    label_names: list[str]
    multi_label: bool = False
    text_field: str = "text"
    label_field: str = "label"  # Label Studio from_name, Argilla question, JSON-MIN/CSV column
    to_name: str = "text"  # Label Studio: the name of the <Text> tag the choices label
    bom: bool = False  # CSV: start with a UTF-8 BOM, so Excel reads UTF-8 (Chinese) text right
    kind: str = "classification"  # the label set's kind (store.models.LabelSetKind)


Reader = Callable[[str, ReadOptions], Upload]
Writer = Callable[[Iterable[dict[str, Any]], ExportSpec], Iterable[str]]


def labelled(examples: list[dict[str, Any] | None], reasons: list[str | None]) -> Upload:
    """An Upload of the rows that have a label; `reasons[i]` says why row i has none."""
    rows = [i for i, example in enumerate(examples) if example is not None]
    skipped = [{"index": i, "reason": reason} for i, reason in enumerate(reasons) if reason is not None]
    if not rows and skipped:
        shown = "; ".join(f"/examples/{s['index']}: {s['reason']}" for s in skipped[:5])
        raise ApiError(422, "no_labelled_rows", f"none of the {len(skipped)} rows carries a label: {shown}",
                       [{"pointer": f"/examples/{s['index']}", "message": s["reason"]} for s in skipped[:100]])
    return Upload({"examples": [examples[i] for i in rows]}, rows, skipped)


def malformed(problems: list[dict[str, Any]]) -> None:
    if problems:
        raise invalid(problems)


def model_version(adapter_version: int | None) -> str:
    """How tools that show a model's version (Label Studio, Argilla) name an adapter version."""
    return f"reftag-v{adapter_version}" if adapter_version is not None else "reftag-untrained"


# --- JSON --------------------------------------------------------------------------------------------


def json_lines(text: str, max_rows: int | None = None) -> list[Any]:
    rows: list[Any] = []
    # split on "\n" only: str.splitlines() would also split inside texts holding U+2028 and friends
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if too_deep(line):
            raise ApiError(400, "malformed_jsonl", f"line {number} {NESTED_TOO_DEEP}",
                           [{"line": number, "limit": MAX_JSON_DEPTH}])
        if max_rows is not None and len(rows) == max_rows:
            raise too_many_rows(max_rows)
        try:
            rows.append(json.loads(line, parse_constant=reject_constant))
        except (ValueError, RecursionError) as e:
            raise ApiError(400, "malformed_jsonl", f"line {number} is not valid JSON: {e}",
                           [{"line": number}]) from None
    return rows


def json_rows(text: str, what: str, max_rows: int | None = None) -> list[Any]:
    """A JSON array of rows (or one object, read as one row)."""
    body = parse_json(text)
    if max_rows is not None and isinstance(body, list) and len(body) > max_rows:
        raise too_many_rows(max_rows)
    if isinstance(body, dict):
        return [body]
    if not isinstance(body, list):
        raise ApiError(422, "invalid_request", f"expected a JSON array of {what}, got {type(body).__name__}",
                       [{"pointer": "", "message": f"expected a JSON array of {what}"}])
    return body


def json_array(items: Iterable[Any]) -> Iterable[str]:
    """A JSON array written one element at a time (exports stream up to max_job_items rows)."""
    yield "["
    for n, item in enumerate(items):
        yield ("," if n else "") + "\n" + json.dumps(item, ensure_ascii=False)
    yield "\n]\n"


# --- CSV ---------------------------------------------------------------------------------------------

# A cell starting with one of these is a formula to Excel and LibreOffice (CSV injection:
# `=HYPERLINK(...)` in a tagged text would run when a lead opens the export). CSV exports write
# such text cells behind a `'`, which spreadsheets show as text; CSV uploads take the `'` off again.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: Any) -> Any:
    return "'" + cell if isinstance(cell, str) and cell.startswith(FORMULA_START) else cell


def from_spreadsheet_safe(cell: str | None) -> str | None:
    return cell[1:] if cell and cell.startswith("'") and cell[1:].startswith(FORMULA_START) else cell


def json_cell(cell: str, row: int, column: str) -> Any:
    """A CSV cell that holds JSON (ValueError when it is not JSON); 400 naming the row (the data
    row, counted from 0, as `/examples/{row}` counts it) and column when it nests deeper than
    MAX_JSON_DEPTH — checked on the cell's text before it is parsed."""
    if too_deep(cell):
        raise ApiError(400, "malformed_csv", f"/examples/{row}/{column}: the JSON in row {row}, column {column!r} "
                       f"{NESTED_TOO_DEEP}", [{"pointer": f"/examples/{row}/{column}", "row": row, "column": column,
                                              "limit": MAX_JSON_DEPTH}])
    return json.loads(cell, parse_constant=reject_constant)


def csv_rows(text: str, max_rows: int | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """A CSV's header and its data rows as dicts (cells made spreadsheet-safe by our exports
    read back as written)."""
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=EXTRA_CELLS)
    rows: list[dict[str, Any]] = []
    try:
        for row in reader:
            if max_rows is not None and len(rows) == max_rows:
                raise too_many_rows(max_rows)
            if EXTRA_CELLS in row:
                columns = len(reader.fieldnames or [])
                cells = columns + len(row[EXTRA_CELLS])
                raise ApiError(400, "malformed_csv", f"CSV line {reader.line_num} has {cells} cells; the header names "
                               f"{columns} columns", [{"line": reader.line_num}])
            rows.append({k: from_spreadsheet_safe(v) for k, v in row.items()})
    except csv.Error as e:
        raise ApiError(400, "malformed_csv", f"CSV line {reader.line_num}: {e}") from None
    return list(reader.fieldnames or []), rows


EXTRA_CELLS = "\x00extra cells"  # the key under which DictReader puts a row's cells beyond the header's


class SafeCsvWriter:
    def __init__(self, buffer: io.StringIO):
        self.writer = csv.writer(buffer)

    def writerow(self, row: list[Any]) -> None:
        self.writer.writerow([spreadsheet_safe(cell) for cell in row])


def csv_writer() -> tuple[SafeCsvWriter, Callable[[], str]]:
    """A CSV writer and a `flush()` that returns what was written since the last flush."""
    buffer = io.StringIO()

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    return SafeCsvWriter(buffer), flush


def csv_header(writer: SafeCsvWriter, flush: Callable[[], str], columns: list[str], spec: ExportSpec) -> str:
    """The header row, behind a byte order mark when the export asks for one."""
    writer.writerow(columns)
    return ("\ufeff" if spec.bom else "") + flush()


def only_one(names: set[str], what: str, parameter: str) -> str | None:
    """The one name the rows agree on (None: none); several → 422 asking for `?parameter=`."""
    if len(names) > 1:
        raise ApiError(422, "ambiguous_field", f"the rows have several {what} ({', '.join(sorted(names))}); "
                       f"name one with ?{parameter}=", [{"pointer": f"/{parameter}", "in": "query",
                                                         "candidates": sorted(names)}])
    return next(iter(names), None)
