"""File formats at the edge: example uploads and result exports.

Readers turn a body into an `Upload`: the same `{"examples": [...]}` document that JSON uploads
send, so one schema validates them all and a problem in row 3 is `/examples/3/...` in every
format (row = line, CSV data row, Label Studio task or Argilla record, counted from 0). A row
that carries no label at all — a Label Studio task nobody annotated, or whose annotations were
all skipped — is not an error: it is left out and listed in the answer's `rejected`, with its
row and the reason. A malformed row or an unknown label rejects the whole upload (422, one
detail per row), as for JSON.

Writers stream a job's results, each with the text of its item, in the same formats (Label
Studio tasks carry them as `predictions`, Argilla records as `suggestions`), so an export reads
back in as examples. A new format is one reader or writer plus one entry in the tables below.
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Iterable, Iterator, Literal

from flask import Request
from pydantic import BaseModel, ConfigDict, Field

from store.catalog import CatalogError

from .errors import ApiError, invalid
from .schemas import json_body, parse_query, reject_constant

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
# Columns of Label Studio's JSON-MIN and CSV exports that are about the annotation, not the task
# data or its label; and the ones reftag's exports add. Neither is ever the label column.
LABEL_STUDIO_META_KEYS = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time",
                          "agreement", "history", "item_id", "score"}


# --- reading examples -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadOptions:
    """Query parameters of an upload in a tool's format (every one optional)."""

    text_field: str | None  # the text's key: Label Studio `data` key, JSON-MIN/CSV column, Argilla field
    label_field: str | None  # Label Studio <Choices> name (from_name), JSON-MIN/CSV column, Argilla question
    labels_from: str  # "annotations" (people's: LS annotations, Argilla responses) or "predictions"


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
        except (ApiError, CatalogError) as e:
            e.message = self.source_pointer(e.message)
            e.details = [{**d, "pointer": self.source_pointer(d["pointer"])} if isinstance(d.get("pointer"), str)
                         else d for d in e.details]
            raise


def labelled(examples: list[dict[str, Any] | None], reasons: list[str | None]) -> Upload:
    """An Upload of the rows that have a label; `reasons[i]` says why row i has none."""
    rows = [i for i, example in enumerate(examples) if example is not None]
    skipped = [{"index": i, "reason": reason} for i, reason in enumerate(reasons) if reason is not None]
    if not rows and skipped:
        shown = "; ".join(f"/examples/{s['index']}: {s['reason']}" for s in skipped[:5])
        raise ApiError(422, "no_labelled_rows", f"none of the {len(skipped)} rows carries a label: {shown}",
                       [{"pointer": f"/examples/{s['index']}", "message": s["reason"]} for s in skipped[:100]])
    return Upload({"examples": [examples[i] for i in rows]}, rows, skipped)


class ExamplesQuery(BaseModel):
    """Query parameters of an examples upload."""

    model_config = ConfigDict(extra="ignore")

    format: Literal["json", "jsonl", "csv", "label_studio", "label_studio_min", "label_studio_csv", "doccano",
                    "argilla"] | None = Field(None, description="default: from Content-Type, else json")
    text_field: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    label_field: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    labels_from: Literal["annotations", "predictions"] = "annotations"


def request_text(request: Request) -> str:
    try:
        return request.get_data(cache=True).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ApiError(400, "malformed_body", f"body is not valid UTF-8: {e}") from None


def json_lines(text: str) -> list[Any]:
    rows = []
    # split on "\n" only: str.splitlines() would also split inside texts holding U+2028 and friends
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line, parse_constant=reject_constant))
        except (ValueError, RecursionError) as e:
            raise ApiError(400, "malformed_jsonl", f"line {number} is not valid JSON: {e}",
                           [{"line": number}]) from None
    return rows


def json_rows(request: Request, what: str) -> list[Any]:
    """A JSON array of rows (or one object, read as one row)."""
    body = json_body()
    if isinstance(body, dict):
        return [body]
    if not isinstance(body, list):
        raise ApiError(422, "invalid_request", f"expected a JSON array of {what}, got {type(body).__name__}",
                       [{"pointer": "", "message": f"expected a JSON array of {what}"}])
    return body


def csv_rows(request: Request) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(request_text(request), newline=""))
    try:
        return list(reader.fieldnames or []), [{k: from_spreadsheet_safe(v) for k, v in row.items()} for row in reader]
    except csv.Error as e:
        raise ApiError(400, "malformed_csv", f"CSV line {reader.line_num}: {e}") from None


def malformed(problems: list[dict[str, Any]]) -> None:
    if problems:
        raise invalid(problems)


def read_json(request: Request, options: ReadOptions) -> Upload:
    return Upload(json_body())


def read_jsonl(request: Request, options: ReadOptions) -> Upload:
    return Upload({"examples": json_lines(request_text(request))})


def read_csv(request: Request, options: ReadOptions) -> Upload:
    columns, rows = csv_rows(request)
    if "text" not in columns or ("label" in columns) == ("labels" in columns):
        raise ApiError(422, "invalid_csv",
                       f"CSV header needs a `text` column and one of `label` or `labels`; got {columns}",
                       [{"pointer": "/columns", "columns": columns}])
    examples = []
    for row in rows:
        if "labels" in row:
            row["labels"] = csv_labels(row["labels"] or "")
        examples.append({k: v for k, v in row.items() if k in ("text", "label", "labels") and v is not None})
    return Upload({"examples": examples})


def csv_labels(cell: str) -> Any:
    cell = cell.strip()
    if cell.startswith("["):
        try:
            return json.loads(cell)
        except ValueError:
            raise ApiError(400, "malformed_csv", f"labels cell is not a JSON list: {cell[:80]!r}") from None
    return [name.strip() for name in cell.split("|") if name.strip()]


def read_doccano(request: Request, options: ReadOptions) -> Upload:
    """doccano's text-classification JSONL: `{"text", "label": [...]}` per line (`label` may also
    be one string; other keys are ignored). An empty `label` list is an unlabelled row."""
    examples: list[dict[str, Any] | None] = []
    reasons: list[str | None] = []
    problems = []
    for i, row in enumerate(json_lines(request_text(request))):
        label = row.get("label", row.get("labels")) if isinstance(row, dict) else None
        if not isinstance(row, dict) or label is None:
            problems.append({"pointer": f"/examples/{i}", "message": "expected {\"text\", \"label\": [...]}"})
            label = []
        names = [label] if isinstance(label, str) else label
        examples.append({"text": row.get("text"), "labels": names} if names else None)
        reasons.append(None if names else "no label (empty `label` list)")
    malformed(problems)
    return labelled(examples, reasons)


# Label Studio ------------------------------------------------------------------------------------


def choice_names(value: Any) -> list[Any] | None:
    """The choices in a JSON-MIN/CSV label cell: "a", {"choices": [...]}, or a list of those."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and isinstance(value.get("choices"), list):
        return value["choices"]
    if isinstance(value, list) and all(choice_names(v) is not None for v in value):
        return [name for v in value for name in choice_names(v)]  # type: ignore[union-attr]
    return None


def only_one(names: set[str], what: str, parameter: str) -> str | None:
    if len(names) > 1:
        raise ApiError(422, "ambiguous_field", f"the rows have several {what} ({', '.join(sorted(names))}); "
                       f"name one with ?{parameter}=", [{"pointer": f"/{parameter}", "in": "query",
                                                         "candidates": sorted(names)}])
    return next(iter(names), None)


def task_text_key(tasks: list[Any], options: ReadOptions) -> str:
    """`?text_field=`, else `text`, else the one `data` key every task shares."""
    if options.text_field:
        return options.text_field
    datas = [t["data"] for t in tasks if isinstance(t, dict) and isinstance(t.get("data"), dict)]
    if not datas or any("text" in data for data in datas):
        return "text"
    shared = set.intersection(*(set(data) for data in datas))
    return only_one(shared, "data keys", "text_field") or "text"


def task_choices(results: Any, from_name: str | None) -> list[Any] | None:
    """The choices of `from_name` in an annotation's result list; None when it is malformed."""
    if not isinstance(results, list):
        return None
    names = []
    for r in results:
        if isinstance(r, dict) and r.get("type") == "choices" and (from_name is None or r.get("from_name") == from_name):
            choices = r.get("value", {}).get("choices") if isinstance(r.get("value"), dict) else None
            if not isinstance(choices, list):
                return None
            names += choices
    return names


def chosen_annotation(task: dict[str, Any], labels_from: str) -> dict[str, Any] | None:
    """The annotation a task's label comes from: its ground truth, else its latest one that was
    not skipped (`labels_from=predictions`: its latest prediction)."""
    given = task.get(labels_from)
    given = [a for a in given if isinstance(a, dict)] if isinstance(given, list) else []
    if labels_from == "predictions":
        return given[-1] if given else None
    usable = [a for a in given if not (a.get("was_cancelled") or a.get("skipped"))]
    return max(usable, key=lambda a: (bool(a.get("ground_truth")), str(a.get("updated_at") or a.get("created_at"))),
               default=None)


def label_studio_examples(tasks: list[Any], options: ReadOptions) -> Upload:
    """Label Studio's JSON export (also what it sends to an ML backend's /train): a list of
    tasks with `data` and `annotations` (or `predictions`), each result of type `choices`."""
    key = task_text_key(tasks, options)
    from_names = {r.get("from_name") for t in tasks if isinstance(t, dict)
                  for a in [*(t.get("annotations") or []), *(t.get("predictions") or [])] if isinstance(a, dict)
                  for r in a.get("result") or [] if isinstance(r, dict) and r.get("type") == "choices"}
    from_name = options.label_field or only_one({n for n in from_names if isinstance(n, str)},
                                                "<Choices> (from_name)", "label_field")
    examples: list[dict[str, Any] | None] = []
    reasons: list[str | None] = []
    problems = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            problems.append({"pointer": f"/examples/{i}", "message": "a task is an object with a `data` object"})
            continue
        if key not in task["data"]:
            problems.append({"pointer": f"/examples/{i}/data", "message": f"task data has no {key!r} "
                             f"(its keys: {', '.join(map(str, task['data']))}); name the text with ?text_field="})
            continue
        annotation = chosen_annotation(task, options.labels_from)
        names = task_choices(annotation.get("result"), from_name) if isinstance(annotation, dict) else []
        if names is None:
            problems.append({"pointer": f"/examples/{i}", "message": f"its {options.labels_from[:-1]}'s `result` is "
                             "not a list of regions with `value: {\"choices\": [...]}`"})
            continue
        examples.append({"text": task["data"][key], "labels": names} if names else None)
        reasons.append(None if names else f"task {task.get('id', i)} has no {options.labels_from[:-1]} with choices"
                       + (f" of {from_name!r}" if from_name else "") + " (not labelled yet, or skipped)")
    malformed(problems)
    return labelled(examples, reasons)


def read_label_studio(request: Request, options: ReadOptions) -> Upload:
    return label_studio_examples(json_rows(request, "Label Studio tasks"), options)


def flat_label_studio_examples(records: list[Any], options: ReadOptions) -> Upload:
    """Label Studio's JSON-MIN and CSV exports: one flat record per annotation, the task's data
    keys beside one column per <Choices> (named by it) holding "label" or {"choices": [...]}."""
    text_key = options.text_field or "text"
    candidates = ({k for r in records if isinstance(r, dict) for k in r if isinstance(k, str)}
                  - LABEL_STUDIO_META_KEYS - {text_key})
    label_key = options.label_field or only_one(candidates, "label columns", "label_field") or "label"
    examples: list[dict[str, Any] | None] = []
    reasons: list[str | None] = []
    problems = []
    for i, record in enumerate(records):
        if not isinstance(record, dict) or text_key not in record:
            problems.append({"pointer": f"/examples/{i}", "message": f"a record has a {text_key!r} key (name the "
                             "text with ?text_field=)"})
            continue
        value = record.get(label_key)
        names = choice_names(value) if value not in (None, "") else []
        if names is None:
            problems.append({"pointer": f"/examples/{i}/{label_key}",
                             "message": "expected a label, {\"choices\": [...]} or a list of those"})
            continue
        examples.append({"text": record[text_key], "labels": names} if names else None)
        reasons.append(None if names else f"no {label_key!r} (task not labelled yet)")
    malformed(problems)
    return labelled(examples, reasons)


def read_label_studio_min(request: Request, options: ReadOptions) -> Upload:
    return flat_label_studio_examples(json_rows(request, "JSON-MIN records"), options)


def read_label_studio_csv(request: Request, options: ReadOptions) -> Upload:
    _columns, rows = csv_rows(request)
    records = []
    for row in rows:
        record: dict[str, Any] = dict(row)
        for key, cell in row.items():
            # Label Studio writes a cell with several choices as JSON: {"choices": [...]}
            if isinstance(cell, str) and cell.startswith(("{", "[")) and key != (options.text_field or "text"):
                try:
                    record[key] = json.loads(cell)
                except ValueError:
                    pass
        records.append(record)
    return flat_label_studio_examples(records, options)


# Argilla -----------------------------------------------------------------------------------------


def argilla_values(record: dict[str, Any], labels_from: str) -> dict[str, list[Any]]:
    """question → the values given for it: people's responses (v2: {q: [{"value"}]}, v1:
    [{"values": {q: {"value"}}, "status"}], discarded ones left out), or the suggestions."""
    found: dict[str, list[Any]] = {}
    if labels_from == "predictions":
        suggestions = record.get("suggestions") or {}
        pairs = (suggestions.items() if isinstance(suggestions, dict)
                 else ((s.get("question_name"), s) for s in suggestions if isinstance(s, dict)))
        for question, suggestion in pairs:
            if isinstance(suggestion, dict) and "value" in suggestion:
                found.setdefault(question, []).append(suggestion["value"])
        return found
    responses = record.get("responses") or {}
    if isinstance(responses, dict):
        for question, answers in responses.items():
            found[question] = [a["value"] for a in answers if isinstance(a, dict) and "value" in a
                               and a.get("status", "submitted") == "submitted"]
    else:
        for response in responses:
            if isinstance(response, dict) and response.get("status", "submitted") == "submitted":
                for question, answer in (response.get("values") or {}).items():
                    if isinstance(answer, dict) and "value" in answer:
                        found.setdefault(question, []).append(answer["value"])
    return found


def majority(values: list[Any]) -> list[Any]:
    """The answer most people gave (the first of those tied); a label is a string or a list."""
    answers = [[v] if isinstance(v, str) else v for v in values]
    counts = Counter(json.dumps(a, sort_keys=True, ensure_ascii=False) for a in answers)
    best = max(counts.values())
    return next(a for a in answers if counts[json.dumps(a, sort_keys=True, ensure_ascii=False)] == best)


def read_argilla(request: Request, options: ReadOptions) -> Upload:
    """Argilla records as `Record.to_dict()` writes them (a JSON array, or one per line):
    `{"id", "fields": {"text"}, "responses": {q: [{"value", "user_id"}]}, "suggestions": {q:
    {"value", "score", "agent"}}}`. The label is the answer most responses gave."""
    text = request_text(request)
    records = json_rows(request, "Argilla records") if text.lstrip().startswith("[") else json_lines(text)
    text_key = options.text_field or "text"
    values = [argilla_values(r, options.labels_from) if isinstance(r, dict) else {} for r in records]
    question = options.label_field or only_one({q for v in values for q, answers in v.items() if answers},
                                               "questions", "label_field")
    examples: list[dict[str, Any] | None] = []
    reasons: list[str | None] = []
    problems = []
    for i, (record, answers) in enumerate(zip(records, values)):
        fields = record.get("fields") if isinstance(record, dict) else None
        if not isinstance(fields, dict) or text_key not in fields:
            problems.append({"pointer": f"/examples/{i}/fields", "message": f"a record has fields with a {text_key!r} "
                             "(name the text field with ?text_field=)"})
            continue
        given = answers.get(question or "", [])
        if any(not (isinstance(v, str) or isinstance(v, list)) for v in given):
            problems.append({"pointer": f"/examples/{i}", "message": f"answers to {question!r} are labels or lists"})
            continue
        names = majority(given) if given else []
        examples.append({"text": fields[text_key], "labels": names} if given else None)
        kind = "response" if options.labels_from == "annotations" else "suggestion"
        reasons.append(None if given else f"record {record.get('id', i)} has no submitted {kind} to {question!r}")
    malformed(problems)
    return labelled(examples, reasons)


EXAMPLE_READERS: dict[str, Callable[[Request, ReadOptions], Upload]] = {
    "json": read_json,
    "jsonl": read_jsonl,
    "csv": read_csv,
    "label_studio": read_label_studio,
    "label_studio_min": read_label_studio_min,
    "label_studio_csv": read_label_studio_csv,
    "doccano": read_doccano,
    "argilla": read_argilla,
}


def read_examples(request: Request) -> Upload:
    """The upload as `{"examples": [...]}`, in the format named by `?format=` or Content-Type
    (JSON when neither says otherwise)."""
    name = request.args.get("format") or MEDIA_FORMATS.get(request.mimetype, "json")
    reader = EXAMPLE_READERS.get(name)
    if reader is None:
        raise ApiError(415, "unsupported_format",
                       f"format {name!r} is not supported for examples; use one of {sorted(EXAMPLE_READERS)}")
    query = parse_query(ExamplesQuery)
    return reader(request, ReadOptions(query.text_field, query.label_field, query.labels_from))


# --- result exports ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSpec:
    """What a writer needs beside the rows: the set's labels (score-vector order) and where the
    text and label go in the tool's format (query parameters of the export)."""

    label_names: list[str]
    multi_label: bool = False
    text_field: str = "text"
    label_field: str = "label"  # Label Studio from_name, Argilla question, JSON-MIN/CSV column
    to_name: str = "text"  # Label Studio: the name of the <Text> tag the choices label
    bom: bool = False  # CSV: start with a UTF-8 BOM, so Excel reads UTF-8 (Chinese) text right


def model_version(adapter_version: int | None) -> str:
    return f"reftag-v{adapter_version}" if adapter_version is not None else "reftag-untrained"


def prediction_score(labels: list[str], scores: dict[str, float]) -> float:
    """One confidence per answer: the score of the weakest label chosen (single-label: the top
    score); with none chosen, how sure the model is that none applies."""
    if labels:
        return min(float(scores.get(name, 0.0)) for name in labels)
    return 1.0 - max(map(float, scores.values())) if scores else 0.0


def label_studio_prediction(result: dict[str, Any], from_name: str, to_name: str) -> dict[str, Any]:
    """A result as one Label Studio prediction: `{"result": [{from_name, to_name, "type":
    "choices", "value": {"choices"}}], "score", "model_version"}` (no region when nothing was
    chosen, which Label Studio cannot show as a choice)."""
    labels = list(result["labels"])
    region = {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": labels}}
    return {"result": [region] if labels else [], "score": round(prediction_score(labels, result["scores"]), 6),
            "model_version": model_version(result["adapter_version"])}


def write_jsonl(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    for r in results:
        yield json.dumps({"item_id": r["item_id"], "text": r["text"], **{k: v for k, v in r.items()
                          if k not in ("item_id", "text")}}, ensure_ascii=False) + "\n"


# A cell starting with one of these is a formula to Excel and LibreOffice (CSV injection:
# `=HYPERLINK(...)` in a tagged text would run when a lead opens the export). CSV exports write
# such text cells behind a `'`, which spreadsheets show as text; CSV uploads take the `'` off again.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: Any) -> Any:
    return "'" + cell if isinstance(cell, str) and cell.startswith(FORMULA_START) else cell


def from_spreadsheet_safe(cell: str | None) -> str | None:
    return cell[1:] if cell and cell.startswith("'") and cell[1:].startswith(FORMULA_START) else cell


class SafeCsvWriter:
    def __init__(self, buffer: io.StringIO):
        self.writer = csv.writer(buffer)

    def writerow(self, row: list[Any]) -> None:
        self.writer.writerow([spreadsheet_safe(cell) for cell in row])


def csv_writer() -> tuple[SafeCsvWriter, Callable[[], str]]:
    buffer = io.StringIO()

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    return SafeCsvWriter(buffer), flush


def labels_cell(labels: list[str]) -> str:
    # `|`-joined, as the CSV reader splits it; a JSON list when a name itself holds a `|`
    return json.dumps(labels, ensure_ascii=False) if any("|" in name for name in labels) else "|".join(labels)


def write_csv(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """item_id, text, labels (`|`-joined), needs_review, adapter_version, error, then one
    `score:<label>` column per label in the set's order."""
    writer, flush = csv_writer()
    writer.writerow(["item_id", "text", "labels", "needs_review", "adapter_version", "error"]
                    + [f"score:{name}" for name in spec.label_names])
    yield ("\ufeff" if spec.bom else "") + flush()
    for r in results:
        writer.writerow([r["item_id"], r["text"], labels_cell(r["labels"]), str(r["needs_review"]).lower(),
                         r["adapter_version"] if r["adapter_version"] is not None else "", r["error"] or ""]
                        + [r["scores"].get(name, "") for name in spec.label_names])
        yield flush()


def json_array(items: Iterable[Any]) -> Iterable[str]:
    """A JSON array written one element at a time (exports stream up to max_job_items rows)."""
    yield "["
    for n, item in enumerate(items):
        yield ("," if n else "") + "\n" + json.dumps(item, ensure_ascii=False)
    yield "\n]\n"


def write_label_studio(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """Tasks to import into Label Studio with the results as pre-annotations (`predictions`)."""
    return json_array(
        {"data": {spec.text_field: r["text"], "item_id": r["item_id"]},
         "predictions": [label_studio_prediction(r, spec.label_field, spec.to_name)] if r["error"] is None else []}
        for r in results)


def min_label(labels: list[str]) -> Any:
    # as Label Studio's JSON-MIN writes a <Choices> answer: the name, or {"choices": [...]} for several
    return labels[0] if len(labels) == 1 else {"choices": labels}


def label_studio_min_record(r: dict[str, Any], spec: ExportSpec) -> dict[str, Any]:
    record = {spec.text_field: r["text"], "item_id": r["item_id"]}
    if r["error"] is None and r["labels"]:
        record[spec.label_field] = min_label(r["labels"])
        record["score"] = round(prediction_score(r["labels"], r["scores"]), 6)
    return record


def write_label_studio_min(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """Label Studio's JSON-MIN: one flat record per item, the label in a column named by the
    <Choices> (`label_field`)."""
    return json_array(label_studio_min_record(r, spec) for r in results)


def write_label_studio_csv(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """Label Studio's CSV export: the JSON-MIN columns in sorted order, several choices as JSON."""
    columns = sorted({spec.text_field, "item_id", spec.label_field, "score"})
    writer, flush = csv_writer()
    writer.writerow(columns)
    yield ("\ufeff" if spec.bom else "") + flush()
    for r in results:
        record = label_studio_min_record(r, spec)
        label = record.get(spec.label_field)
        if isinstance(label, dict):
            record[spec.label_field] = json.dumps(label, ensure_ascii=False)
        writer.writerow([record.get(column, "") for column in columns])
        yield flush()


def write_doccano(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """doccano's text-classification JSONL: `{"text", "label": [...], "item_id"}` per line."""
    for r in results:
        yield json.dumps({"text": r["text"], "label": r["labels"], "item_id": r["item_id"]}, ensure_ascii=False) + "\n"


def argilla_record(r: dict[str, Any], spec: ExportSpec) -> dict[str, Any]:
    suggestions = {}
    if r["error"] is None and (r["labels"] or spec.multi_label):
        if spec.multi_label:  # a multi-label question: a list of labels with a list of scores
            value: Any = r["labels"]
            score: Any = [round(float(r["scores"][name]), 6) for name in r["labels"]]
        else:
            value, score = r["labels"][0], round(float(r["scores"][r["labels"][0]]), 6)
        suggestions[spec.label_field] = {"value": value, "score": score, "agent": model_version(r["adapter_version"])}
    return {"id": r["item_id"], "fields": {spec.text_field: r["text"]},
            "metadata": {"needs_review": r["needs_review"], "adapter_version": r["adapter_version"]},
            "suggestions": suggestions, "responses": {}, "vectors": {}}


def write_argilla(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """Argilla records (`Record.to_dict()`, as `dataset.records.to_json` writes them) with the
    results as suggestions to review."""
    return json_array(argilla_record(r, spec) for r in results)


RESULT_WRITERS: dict[str, tuple[str, Callable[[Iterable[dict[str, Any]], ExportSpec], Iterable[str]]]] = {
    "jsonl": ("application/x-ndjson", write_jsonl),
    "csv": ("text/csv; charset=utf-8", write_csv),
    "label_studio": ("application/json", write_label_studio),
    "label_studio_min": ("application/json", write_label_studio_min),
    "label_studio_csv": ("text/csv; charset=utf-8", write_label_studio_csv),
    "doccano": ("application/x-ndjson", write_doccano),
    "argilla": ("application/json", write_argilla),
}
FILE_SUFFIX = {"jsonl": "jsonl", "csv": "csv", "label_studio": "json", "label_studio_min": "min.json",
               "label_studio_csv": "csv", "doccano": "jsonl", "argilla": "json"}
