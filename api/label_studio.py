"""Label Studio's ML backend contract, served for one label set at `/ls/<label_set_id>/`.

Connect it in Label Studio (project → Settings → Model → Connect Model) with the URL
`<reftag>/ls/<label_set_id>` and "Basic auth" whose password is an API key (any user name).
Label Studio then calls:

- `GET /health` (and `GET /`): is the backend up;
- `POST /setup` `{project, schema, ...}` → `{"model_version"}`, on connecting and before predicting;
- `POST /predict` `{tasks, project, label_config, params}` → `{"results": [prediction per task]}`;
- `POST /webhook` `{action, annotation, task, project}`: `ANNOTATION_CREATED`/`_UPDATED` store the
  annotation as an example, `START_TRAINING` starts a train job; other actions are ignored;
- `POST /train` `{annotations: [task...], project, label_config}`: what Label Studio versions
  without training webhooks send for "Start Training".

The request and answer shapes are Label Studio's, not reftag's (so they are declared here, not
in schemas.py); errors keep reftag's error format, which Label Studio shows as the message.
`/predict` never loads a model in the web tier: tasks go to the `predict` queue in batches
(grouped by length), all sent at once, with the adapter version pinned for the whole request.
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, g
from pydantic import BaseModel, ConfigDict, Field

from store import catalog

from . import auth, broker, formats
from .db import read_transaction, transaction
from .errors import ApiError, invalid
from .openapi import operation
from .schemas import RequestModel, job_json, parse_body, settings, too_many

bp = Blueprint("label_studio", __name__, url_prefix="/ls/<id:label_set_id>")
bp.before_request(auth.require_tenant_bearer_or_basic)

ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
TEXT_TAGS = ("text", "hypertext")
LS_ERRORS = (400, 401, 404, 409, 413, 422)


# --- Label Studio's request shapes ------------------------------------------------------------


class LabelStudioBody(RequestModel):
    # Label Studio adds fields from version to version; reftag reads only the ones it names.
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)


class PredictBody(LabelStudioBody):
    """What Label Studio sends to /predict."""

    tasks: list[dict[str, Any]]
    label_config: str
    project: str | int | None = None
    params: dict[str, Any] | None = None


class SetupBody(LabelStudioBody):
    """What Label Studio sends to /setup (`schema` is the project's labeling config)."""

    labeling_config: str | None = Field(None, alias="schema")
    project: str | int | None = None


class WebhookBody(LabelStudioBody):
    """A Label Studio webhook: `{"action", "project", ...}` plus the action's objects (a list of
    them for bulk actions such as ANNOTATIONS_CREATED)."""

    action: str
    project: dict[str, Any] | None = None
    annotation: dict[str, Any] | list[Any] | None = None
    task: dict[str, Any] | list[Any] | None = None


class TrainBody(LabelStudioBody):
    """What Label Studio sends to /train: every annotated task, as its JSON export writes them."""

    annotations: list[Any]
    label_config: str


class PredictionOut(BaseModel):
    result: list[dict[str, Any]]
    score: float
    model_version: str


class PredictOut(BaseModel):
    results: list[PredictionOut]


class SetupOut(BaseModel):
    model_version: str


class HealthOut(BaseModel):
    status: str
    model_class: str
    model_version: str


class WebhookOut(BaseModel):
    status: str
    action: str
    detail: dict[str, Any]


# --- the labeling config ----------------------------------------------------------------------


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
        if choices.get("name") and source.startswith("$") and len(source) > 1:
            offered = tuple(c.get("alias") or c.get("value") or "" for c in choices.iter() if c.tag.lower() == "choice")
            return LabelConfig(choices.get("name"), to_name, source[1:], offered)
    raise refuse('no <Choices name="..." toName="..."> labels a <Text name="..." value="$field"> '
                 "(reftag answers text classification)")


def model_version(session: Any, label_set_id: str) -> str:
    active = catalog.get_label_set(session, g.tenant_id, label_set_id).active_adapter
    return formats.model_version(active.version if active else None)


def task_texts(tasks: list[dict[str, Any]], key: str) -> list[str]:
    """The text of each task (`data[key]`); 422 naming every task that has none."""
    problems = []
    for i, task in enumerate(tasks):
        value = task.get("data", {}).get(key) if isinstance(task.get("data"), dict) else None
        if not isinstance(value, str):
            problems.append({"pointer": f"/tasks/{i}/data/{key}",
                             "message": f"task {task.get('id', i)} has no text in data.{key} (the <Text> the "
                                        "<Choices> label reads $" + key + ")"})
    if problems:
        raise invalid(problems)
    # The model reads the first max_length tokens only; a longer text would be cut anyway.
    return [task["data"][key][: settings().max_text_chars] for task in tasks]


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


# --- routes -------------------------------------------------------------------------------------


@bp.get("/")
@bp.get("/health")
@operation("Label Studio: health", tag="label studio", responses={200: HealthOut}, errors=(401, 404), public=True)
def health(label_set_id: str):
    """Auth: the API key as the Basic auth password, or as a Bearer token."""
    with read_transaction() as session:
        return {"status": "UP", "model_class": "reftag", "model_version": model_version(session, label_set_id)}


@bp.post("/setup")
@operation("Label Studio: set up a project", tag="label studio", responses={200: SetupOut}, errors=LS_ERRORS,
           public=True)
def setup(label_set_id: str):
    """Checks the project's labeling config against the label set (same choices as labels) and
    answers the active adapter's version."""
    body = parse_body(SetupBody)
    config = label_config(body.labeling_config, "/schema")
    with read_transaction() as session:
        label_set = catalog.label_set_row(session, g.tenant_id, label_set_id)
        check_choices(config, [label.name for label in label_set.labels], "/schema")
        return {"model_version": model_version(session, label_set_id)}


@bp.post("/predict")
@operation("Label Studio: predict tasks", tag="label studio", responses={200: PredictOut},
           errors=(*LS_ERRORS, 502, 503, 504), public=True)
def predict(label_set_id: str):
    """One prediction per task, in order: `{"result": [{from_name, to_name, "type": "choices",
    "value": {"choices"}}], "score", "model_version"}`, by the active adapter."""
    body = parse_body(PredictBody)
    config = label_config(body.label_config, "/label_config")
    if len(body.tasks) > settings().max_job_items:
        raise too_many("tasks", len(body.tasks), settings().max_job_items, "/tasks", "REFTAG_MAX_JOB_ITEMS")
    texts = task_texts(body.tasks, config.data_key)
    with read_transaction() as session:
        version = catalog.resolve_adapter(session, g.tenant_id, label_set_id, None).version
    asked = [i for i, text in enumerate(texts) if text.strip()]  # an empty text gets an empty answer
    answers = broker.predict_many(g.tenant_id, label_set_id, version, [texts[i] for i in asked],
                                  settings().chunk_size, settings().predict_timeout)
    by_task: dict[int, dict[str, Any]] = dict(zip(asked, answers))
    nothing = {"labels": [], "scores": {}, "adapter_version": version}
    return {"results": [formats.label_studio_prediction(by_task.get(i, nothing), config.from_name, config.to_name)
                        for i in range(len(texts))]}


@bp.post("/webhook")
@operation("Label Studio: webhook", tag="label studio", responses={200: WebhookOut, 201: WebhookOut},
           errors=(*LS_ERRORS, 503), public=True)
def webhook(label_set_id: str):
    """`ANNOTATION_CREATED` / `ANNOTATION_UPDATED`: the annotation's choices become the example of
    the task's text (sent again, it is a duplicate; updated, the example takes the new labels).
    `START_TRAINING`: a train job, as `POST /v1/label-sets/{id}/train`. Other actions: 200, ignored."""
    body = parse_body(WebhookBody)
    if body.action == "START_TRAINING":
        return {"status": "ok", "action": body.action, "detail": {"train_job": start_training(label_set_id)}}, 201
    if body.action not in ANNOTATION_EVENTS:  # Label Studio sends its ML backend every action
        return {"status": "ignored", "action": body.action, "detail": {}}
    if not isinstance(body.annotation, dict) or not isinstance(body.task, dict):
        raise invalid([{"pointer": "/task" if isinstance(body.annotation, dict) else "/annotation",
                        "message": f"{body.action} needs the annotation and its task as objects "
                                   "(Label Studio 1.4 and later send both)"}])
    if body.annotation.get("was_cancelled"):
        return {"status": "ignored", "action": body.action, "detail": {"reason": "the task was skipped"}}
    config = label_config((body.project or {}).get("label_config"), "/project/label_config")
    text = task_texts([body.task], config.data_key)[0]
    labels, where = annotation_choices(body.annotation, config.from_name)
    if not labels:
        return {"status": "ignored", "action": body.action,
                "detail": {"reason": f"the annotation chooses nothing in <Choices name={config.from_name!r}>"}}
    with transaction() as session:
        try:
            added = catalog.add_examples(session, g.tenant_id, label_set_id, [(text, labels)])
        except catalog.Invalid as e:  # point at the annotation's choices, not at an upload's rows
            e.details = [{**d, "pointer": where[labels.index(d["label"])] if d.get("label") in labels
                          else "/annotation/result"} for d in e.details]
            raise
        relabelled = body.action == "ANNOTATION_UPDATED" and catalog.relabel_example(
            session, g.tenant_id, label_set_id, text, labels)
    return {"status": "ok", "action": body.action,
            "detail": {"added": added.added, "duplicates": added.duplicates, "relabelled": relabelled,
                       "labels": labels}}, 201


@bp.post("/train")
@operation("Label Studio: train on annotated tasks", tag="label studio", responses={201: WebhookOut},
           errors=(*LS_ERRORS, 503), public=True)
def train(label_set_id: str):
    """Stores the annotated tasks as examples (rows with no annotation are skipped), then
    starts a train job."""
    body = parse_body(TrainBody)
    config = label_config(body.label_config, "/label_config")
    upload = formats.label_studio_examples(
        body.annotations, formats.ReadOptions(config.data_key, config.from_name, "annotations"))
    with upload.errors_at_source_rows():
        pairs = [(e["text"], e["labels"]) for e in upload.document["examples"]]
        with transaction() as session:
            added = catalog.add_examples(session, g.tenant_id, label_set_id, pairs)
    return {"status": "ok", "action": "TRAIN",
            "detail": {"added": added.added, "duplicates": added.duplicates, "skipped": upload.skipped,
                       "train_job": start_training(label_set_id)}}, 201


def start_training(label_set_id: str) -> dict[str, Any]:
    with transaction() as session:
        job = catalog.create_train_job(session, g.tenant_id, label_set_id, {}, settings().min_examples_per_label)
    broker.submit_train(job.id)
    return job_json(job)


def annotation_choices(annotation: dict[str, Any], from_name: str) -> tuple[list[str], list[str]]:
    """The choices of `from_name` in an annotation, and the JSON pointer of each in the payload."""
    labels, pointers = [], []
    for k, region in enumerate(annotation.get("result") or []):
        if isinstance(region, dict) and region.get("from_name") == from_name and region.get("type") == "choices":
            choices = (region.get("value") or {}).get("choices")
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise invalid([{"pointer": f"/annotation/result/{k}/value/choices",
                                "message": "choices are a list of label names"}])
            labels += choices
            pointers += [f"/annotation/result/{k}/value/choices/{j}" for j in range(len(choices))]
    return labels, pointers
