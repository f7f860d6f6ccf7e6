"""Label Studio, as text in and out: its exports (JSON tasks, JSON-MIN, CSV) read as examples,
results written as tasks with pre-annotations (`predictions`) or as JSON-MIN/CSV records, its
labeling config read for what reftag answers, and an annotation's choices or spans. The ML
backend's HTTP routes (`label_studio_backend.py`) are built from these.

Text classification is a <Choices> on a <Text>, its results of type `choices`; span labeling is a
<Labels> on a <Text>, one result of type `labels` per span (`value`: start, end, text, and a
list of one label). Label Studio counts a span's `start` and `end` in JavaScript string units
(UTF-16 code units), where a character outside the Basic Multilingual Plane (an emoji) counts
two; reftag counts characters. `Utf16` converts, on the way in and on the way out."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from store.models import LabelSetKind

from ..errors import ApiError, invalid
from .document import (
    ExportSpec,
    ReadOptions,
    Upload,
    csv_header,
    csv_rows,
    csv_writer,
    json_array,
    json_cell,
    json_rows,
    labelled,
    malformed,
    model_version,
    only_one,
)

# Columns of Label Studio's JSON-MIN and CSV exports that are about the annotation, not the task
# data or its label; and the ones reftag's exports add. Neither is ever the label column.
META_KEYS = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement", "history",
             "item_id", "score"}
TEXT_TAGS = ("text", "hypertext")
# The control tag a label set's kind answers with, which is also the type of its results.
CONTROL_TAGS = {LabelSetKind.CLASSIFICATION: "choices", LabelSetKind.SPANS: "labels"}


# --- offsets ------------------------------------------------------------------------------------------


class Utf16:
    """One text's offsets in UTF-16 code units (Label Studio's) and in characters (reftag's).
    Built once per text, each conversion is a lookup (a bisection for `index`)."""

    def __init__(self, text: str):
        self.length = len(text)
        # where each character starts in UTF-16 units, and the end; None when they are the same
        self.starts: list[int] | None = None
        if any(ord(char) > 0xFFFF for char in text):
            self.starts = [0]
            for char in text:
                self.starts.append(self.starts[-1] + (2 if ord(char) > 0xFFFF else 1))

    def units(self, index: int) -> int:
        """The UTF-16 offset of character offset `index` (0 ≤ index ≤ len(text))."""
        return index if self.starts is None else self.starts[index]

    def index(self, units: int) -> int | None:
        """The character offset of UTF-16 offset `units`; None when it falls between the two
        halves of a surrogate pair. An offset past the text stays past it by as many
        characters, so that validation names it as past the end."""
        if self.starts is None or units < 0:
            return units
        if units > self.starts[-1]:
            return self.length + units - self.starts[-1]
        k = bisect_left(self.starts, units)
        return k if self.starts[k] == units else None


# --- the labeling config ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelConfig:
    """What reftag needs from a labeling config: the <Choices> (or, for spans, the <Labels>) it
    answers (`from_name`), the <Text> those label (`to_name`), the task data key of the text,
    the choices (or labels) offered, and which of the two tags it is (`tag`, also the type of
    its results: "choices" or "labels")."""

    from_name: str
    to_name: str
    data_key: str
    choices: tuple[str, ...]
    tag: str = "choices"


def label_config(xml: str | None, pointer: str, kind: str = LabelSetKind.CLASSIFICATION) -> LabelConfig:
    """The first <Choices> (for a label set of kind spans: <Labels>) that labels a <Text
    value="$key">, as Label Studio's own backends pick it; 422 naming what is missing."""
    def refuse(message: str) -> ApiError:
        return invalid([{"pointer": pointer, "message": message}], code="invalid_label_config")

    if not xml or not xml.strip():
        raise refuse("the labeling config is missing")
    if "<!DOCTYPE" in xml.upper() or "<!ENTITY" in xml.upper():  # a labeling config never needs one
        raise refuse("DOCTYPE and ENTITY declarations are not accepted")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as e:
        raise refuse(f"the labeling config is not valid XML: {e}") from None
    elements = list(root.iter())
    texts = {e.get("name"): e.get("value", "") for e in elements if e.tag.lower() in TEXT_TAGS}
    tag = CONTROL_TAGS[LabelSetKind(kind)]
    for control in (e for e in elements if e.tag.lower() == tag):
        to_name = (control.get("toName") or "").split(",")[0]
        source = texts.get(to_name, "")
        name = control.get("name")
        if name and source.startswith("$") and len(source) > 1:
            offered = tuple(c.get("alias") or c.get("value") or "" for c in control.iter()
                            if c.tag.lower() == tag[:-1])  # <Choice> in <Choices>, <Label> in <Labels>
            return LabelConfig(name, to_name, source[1:], offered, tag)
    if tag == "labels":
        raise refuse('no <Labels name="..." toName="..."> labels a <Text name="..." value="$field"> '
                     "(the label set is of kind spans: reftag answers span labeling)")
    raise refuse('no <Choices name="..." toName="..."> labels a <Text name="..." value="$field"> '
                 "(reftag answers text classification)")


def check_choices(config: LabelConfig, label_names: list[str], pointer: str) -> None:
    """The config's choices (or <Labels>' labels) and the set's labels must be the same names:
    an annotation with any other could not be stored, and a prediction of any other label not
    shown."""
    unknown = [c for c in config.choices if c not in label_names]
    missing = [name for name in label_names if name not in config.choices]
    if unknown or missing:
        tag = config.tag.capitalize()
        parts = ([f"{config.tag} not in the label set: {', '.join(map(repr, unknown))}"] if unknown else []) + (
            [f"labels of the set missing from <{tag} name={config.from_name!r}>: {', '.join(map(repr, missing))}"]
            if missing else [])
        raise invalid([{"pointer": pointer, "message": "; ".join(parts), "unknown_choices": unknown,
                        "missing_labels": missing}], code="label_config_mismatch")


def task_texts(tasks: list[dict[str, Any]], key: str, at: str = "/tasks/{i}") -> list[str]:
    """The text of each task (`data[key]`); 422 naming every task that has none (`at`: the
    task's JSON pointer in the request)."""
    problems = []
    for i, task in enumerate(tasks):
        value = task.get("data", {}).get(key) if isinstance(task.get("data"), dict) else None
        if not isinstance(value, str):
            problems.append({"pointer": at.format(i=i) + f"/data/{key}",
                             "message": f"task {task.get('id', i)} has no text in data.{key} (the <Text> the "
                                        "<Choices> label reads $" + key + ")"})
    if problems:
        raise invalid(problems)
    return [task["data"][key] for task in tasks]


def task_ids(tasks: list[dict[str, Any]]) -> list[str]:
    """A name for each task: its Label Studio id, or its position when ids are missing or repeat."""
    ids = [str(task.get("id", ""))[:200] for task in tasks]
    return ids if all(ids) and len(set(ids)) == len(ids) else [str(i) for i in range(len(tasks))]


def annotation_choices(annotation: dict[str, Any], from_name: str) -> tuple[list[str], list[str]]:
    """The choices of `from_name` in an annotation, and the JSON pointer of each in the payload."""
    labels: list[str] = []
    pointers: list[str] = []
    for k, region in enumerate(listed(annotation.get("result"))):
        if isinstance(region, dict) and region.get("from_name") == from_name and region.get("type") == "choices":
            value = region.get("value")
            choices = value.get("choices") if isinstance(value, dict) else None
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise invalid([{"pointer": f"/annotation/result/{k}/value/choices",
                                "message": "choices are a list of label names"}])
            labels += choices
            pointers += [f"/annotation/result/{k}/value/choices/{j}" for j in range(len(choices))]
    return labels, pointers


def annotation_spans(annotation: dict[str, Any], from_name: str, text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The spans of `from_name` in an annotation of `text` (`{"start", "end", "label"}`, character
    offsets), and the JSON pointer of each span's region in the payload; 422 naming a region
    that is not one span with one label."""
    spans: list[dict[str, Any]] = []
    pointers: list[str] = []
    offsets = Utf16(text)
    problems = []
    for k, region in enumerate(listed(annotation.get("result"))):
        if isinstance(region, dict) and region.get("from_name") == from_name and region.get("type") == "labels":
            at = f"/annotation/result/{k}"
            span = region_span(region.get("value"), offsets)
            if isinstance(span, str):
                problems.append({"pointer": at + "/value", "message": span})
                continue
            spans.append(span)
            pointers.append(at)
    if problems:
        raise invalid(problems)
    return spans, pointers


def region_span(value: Any, offsets: Utf16) -> dict[str, Any] | str:
    """A `labels` result's value as a span in characters, or what is wrong with it."""
    if not isinstance(value, dict):
        return "a labels result's value is {\"start\", \"end\", \"labels\": [label]}"
    start, end, labels = value.get("start"), value.get("end"), value.get("labels")
    if not (isinstance(start, int) and isinstance(end, int)) or isinstance(start, bool) or isinstance(end, bool):
        return "start and end are integer offsets (UTF-16 units)"
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        return f"a span carries exactly one label, as a list of one name; got {str(labels)[:80]}"
    first, last = offsets.index(start), offsets.index(end)
    if first is None or last is None:
        return f"offset {start if first is None else end} falls inside a character (between a surrogate pair)"
    return {"start": first, "end": last, "label": labels[0]}


def listed(value: Any) -> list[Any]:
    """A payload's list, or none when it holds something else there."""
    return value if isinstance(value, list) else []


# --- reading exports as examples ---------------------------------------------------------------------


def choice_names(value: Any) -> list[Any] | None:
    """The choices in a JSON-MIN/CSV label cell: "a", {"choices": [...]}, or a list of those
    (None when it is none of these). Each element is looked at once."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and isinstance(value.get("choices"), list):
        return value["choices"]
    if not isinstance(value, list):
        return None
    names: list[Any] = []
    for element in value:
        found = choice_names(element)
        if found is None:
            return None
        names += found
    return names


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
        if isinstance(r, dict) and r.get("type") == "choices" and (from_name is None
                                                                   or r.get("from_name") == from_name):
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


def tasks_as_examples(tasks: list[Any], options: ReadOptions) -> Upload:
    """Label Studio's JSON export (also what it sends to an ML backend's /train): a list of
    tasks with `data` and `annotations` (or `predictions`), whose results are of type `choices`
    (text classification) or `labels` (spans, one result each). The control read is
    `?label_field=`, else the one <Choices> or <Labels> the results name; when it is a <Labels>,
    each task with an annotation is an example with spans — none when its annotation marks
    nothing (Label Studio's `result: []`)."""
    key = task_text_key(tasks, options)
    controls: set[tuple[str, str]] = {
        (r["from_name"], r["type"]) for t in tasks if isinstance(t, dict)
        for a in [*listed(t.get("annotations")), *listed(t.get("predictions"))] if isinstance(a, dict)
        for r in listed(a.get("result"))
        if isinstance(r, dict) and r.get("type") in ("choices", "labels") and isinstance(r.get("from_name"), str)}
    from_name = options.label_field or only_one({name for name, _ in controls}, "<Choices> or <Labels> (from_name)",
                                                "label_field")
    spans = (from_name, "labels") in controls
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
        if spans:
            found = task_spans(task, i, annotation, from_name, key, options.labels_from)
            if isinstance(found, list):
                problems += found
                continue
            examples.append(found)
            reasons.append(None if found else f"task {task.get('id', i)} has no {options.labels_from[:-1]} "
                           "(not labelled yet, or skipped)")
            continue
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


def task_spans(task: dict[str, Any], i: int, annotation: dict[str, Any] | None, from_name: str | None, key: str,
               labels_from: str) -> dict[str, Any] | None | list[dict[str, Any]]:
    """Task i's example with the spans of `from_name` in `annotation` (None: no annotation), or
    the problems of its malformed regions, each at its pointer in the upload."""
    if annotation is None:
        return None
    at = f"/examples/{i}/{labels_from}/{next(j for j, a in enumerate(task[labels_from]) if a is annotation)}/result"
    results = annotation.get("result")
    if not isinstance(results, list):
        return [{"pointer": at, "message": "`result` is a list of regions"}]
    text = task["data"][key]
    offsets = Utf16(text if isinstance(text, str) else "")
    spans: list[dict[str, Any]] = []
    problems = []
    for k, region in enumerate(results):
        if isinstance(region, dict) and region.get("type") == "labels" and region.get("from_name") == from_name:
            span = region_span(region.get("value"), offsets)
            if isinstance(span, str):
                problems.append({"pointer": f"{at}/{k}/value", "message": span})
            else:
                spans.append(span)
    return problems or {"text": text, "spans": spans}


def read(text: str, options: ReadOptions) -> Upload:
    return tasks_as_examples(json_rows(text, "Label Studio tasks", options.max_rows), options)


def flat_records_as_examples(records: list[Any], options: ReadOptions) -> Upload:
    """Label Studio's JSON-MIN and CSV exports: one flat record per annotation, the task's data
    keys beside one column per <Choices> (named by it) holding "label" or {"choices": [...]}."""
    text_key = options.text_field or "text"
    candidates = ({k for r in records if isinstance(r, dict) for k in r if isinstance(k, str)}
                  - META_KEYS - {text_key})
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


def read_min(text: str, options: ReadOptions) -> Upload:
    return flat_records_as_examples(json_rows(text, "JSON-MIN records", options.max_rows), options)


def read_csv(text: str, options: ReadOptions) -> Upload:
    _columns, rows = csv_rows(text, options.max_rows)
    records = []
    for i, row in enumerate(rows):
        record: dict[str, Any] = dict(row)
        for key, cell in row.items():
            # Label Studio writes a cell with several choices as JSON: {"choices": [...]}
            if isinstance(cell, str) and cell.startswith(("{", "[")) and key != (options.text_field or "text"):
                try:
                    record[key] = json_cell(cell, i, key)
                except ValueError:
                    pass
        records.append(record)
    return flat_records_as_examples(records, options)


# --- writing results ---------------------------------------------------------------------------------


def prediction_score(labels: list[str], scores: dict[str, float]) -> float:
    """One confidence per answer: the score of the weakest label chosen (single-label: the top
    score); with none chosen, how sure the model is that none applies."""
    if labels:
        return min(float(scores.get(name, 0.0)) for name in labels)
    return 1.0 - max(map(float, scores.values())) if scores else 0.0


def prediction(result: dict[str, Any], from_name: str, to_name: str) -> dict[str, Any]:
    """A result as one Label Studio prediction: `{"result": [{from_name, to_name, "type":
    "choices", "value": {"choices"}}], "score", "model_version"}` (no region when nothing was
    chosen, which Label Studio cannot show as a choice)."""
    labels = list(result["labels"])
    region = {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": labels}}
    return {"result": [region] if labels else [], "score": round(prediction_score(labels, result["scores"]), 6),
            "model_version": model_version(result["adapter_version"])}


def span_prediction(result: dict[str, Any], text: str, from_name: str, to_name: str) -> dict[str, Any]:
    """A spans result as one Label Studio prediction: a region of type `labels` per span
    (`value`: start and end in UTF-16 units, text, labels: [its label]; `score`: the span's),
    the prediction's `score` the result's confidence."""
    offsets = Utf16(text)
    regions = [{"from_name": from_name, "to_name": to_name, "type": "labels",
                "value": {"start": offsets.units(span["start"]), "end": offsets.units(span["end"]),
                          "text": text[span["start"]:span["end"]], "labels": [span["label"]]},
                "score": round(float(span["score"]), 6)} for span in result["spans"]]
    confidence = result.get("confidence")
    if confidence is None:  # as sure as its least sure span
        confidence = min((float(span["score"]) for span in result["spans"]), default=0.0)
    return {"result": regions, "score": round(float(confidence), 6),
            "model_version": model_version(result["adapter_version"])}


def write(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """Tasks to import into Label Studio with the results as pre-annotations (`predictions`):
    choices, or for a spans set one `labels` region per span."""
    def predictions(r: dict[str, Any]) -> list[dict[str, Any]]:
        if r["error"] is not None:
            return []
        if spec.kind == LabelSetKind.SPANS:
            return [span_prediction(r, r["text"], spec.label_field, spec.to_name)]
        return [prediction(r, spec.label_field, spec.to_name)]

    return json_array({"data": {spec.text_field: r["text"], "item_id": r["item_id"]}, "predictions": predictions(r)}
                      for r in results)


def min_label(labels: list[str]) -> Any:
    # as Label Studio's JSON-MIN writes a <Choices> answer: the name, or {"choices": [...]} for several
    return labels[0] if len(labels) == 1 else {"choices": labels}


def min_record(r: dict[str, Any], spec: ExportSpec) -> dict[str, Any]:
    record = {spec.text_field: r["text"], "item_id": r["item_id"]}
    if r["error"] is None and r["labels"]:
        record[spec.label_field] = min_label(r["labels"])
        record["score"] = round(prediction_score(r["labels"], r["scores"]), 6)
    return record


def write_min(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """JSON-MIN: one flat record per item, the label in a column named by the <Choices>
    (`label_field`)."""
    return json_array(min_record(r, spec) for r in results)


def write_csv(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """The CSV export: the JSON-MIN columns in sorted order, several choices as JSON."""
    columns = sorted({spec.text_field, "item_id", spec.label_field, "score"})
    writer, flush = csv_writer()
    yield csv_header(writer, flush, columns, spec)
    for r in results:
        record = min_record(r, spec)
        label = record.get(spec.label_field)
        if isinstance(label, dict):
            record[spec.label_field] = json.dumps(label, ensure_ascii=False)
        writer.writerow([record.get(column, "") for column in columns])
        yield flush()
