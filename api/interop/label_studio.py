"""Label Studio, as text in and out: its exports (JSON tasks, JSON-MIN, CSV) read as examples,
results written as tasks with pre-annotations (`predictions`) or as JSON-MIN/CSV records, its
labeling config read for what reftag answers, and an annotation's choices. The ML backend's
HTTP routes (`label_studio_backend.py`) are built from these."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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


# --- the labeling config ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelConfig:
    """What reftag needs from a labeling config: the <Choices> it answers (`from_name`), the
    <Text> those label (`to_name`), the task data key of the text, and the choices offered."""

    from_name: str
    to_name: str
    data_key: str
    choices: tuple[str, ...]


def label_config(xml: str | None, pointer: str) -> LabelConfig:
    """The first <Choices> that labels a <Text value="$key">, as Label Studio's own backends
    pick it; 422 naming what is missing."""
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
    for choices in (e for e in elements if e.tag.lower() == "choices"):
        to_name = (choices.get("toName") or "").split(",")[0]
        source = texts.get(to_name, "")
        name = choices.get("name")
        if name and source.startswith("$") and len(source) > 1:
            offered = tuple(c.get("alias") or c.get("value") or "" for c in choices.iter() if c.tag.lower() == "choice")
            return LabelConfig(name, to_name, source[1:], offered)
    raise refuse('no <Choices name="..." toName="..."> labels a <Text name="..." value="$field"> '
                 "(reftag answers text classification)")


def check_choices(config: LabelConfig, label_names: list[str], pointer: str) -> None:
    """The config's choices and the set's labels must be the same names: an annotation with any
    other choice could not be stored, and a prediction of any other label not shown."""
    unknown = [c for c in config.choices if c not in label_names]
    missing = [name for name in label_names if name not in config.choices]
    if unknown or missing:
        parts = ([f"choices not in the label set: {', '.join(map(repr, unknown))}"] if unknown else []) + (
            [f"labels of the set missing from <Choices name={config.from_name!r}>: {', '.join(map(repr, missing))}"]
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
    tasks with `data` and `annotations` (or `predictions`), each result of type `choices`."""
    key = task_text_key(tasks, options)
    from_names = {r.get("from_name") for t in tasks if isinstance(t, dict)
                  for a in [*listed(t.get("annotations")), *listed(t.get("predictions"))] if isinstance(a, dict)
                  for r in listed(a.get("result")) if isinstance(r, dict) and r.get("type") == "choices"}
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


def write(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """Tasks to import into Label Studio with the results as pre-annotations (`predictions`)."""
    return json_array(
        {"data": {spec.text_field: r["text"], "item_id": r["item_id"]},
         "predictions": [prediction(r, spec.label_field, spec.to_name)] if r["error"] is None else []}
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
