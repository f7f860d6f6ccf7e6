"""Label Studio's ML backend contract, served for one label set at `/ls/<label_set_id>/`.

Connect it in Label Studio (project → Settings → Model → Connect Model) with the URL
`<reftag>/ls/<label_set_id>` and "Basic auth" whose password is an API key (any user name).
Label Studio then calls:

- `GET /health` (and `GET /`): is the backend up;
- `GET /versions` → `{"versions": [model_version...]}`: every version, newest first (Label Studio's
  `GET /api/ml/{id}/versions` passes the list on); reftag adds which one is active and what the
  latest training decided;
- `POST /setup` `{project, schema, ...}` → `{"model_version"}`, on connecting and before predicting;
- `POST /predict` `{tasks, project, label_config, params}` → `{"results": [prediction per task]}`:
  `choices` for a classification set (its config's <Choices>), for a spans set (its config's
  <Labels> on a <Text>) a `labels` region per span, pre-annotations Label Studio shows highlighted;
- `POST /webhook` `{action, annotation, task, project}`: `ANNOTATION_CREATED`/`_UPDATED` store the
  annotation as an example, `START_TRAINING` starts a train job; other actions are ignored;
- `POST /train` `{annotations: [task...], project, label_config}`: what Label Studio versions
  without training webhooks send for "Start Training".

The request and answer shapes are Label Studio's, not reftag's (so they are declared here, not
in the v1 schemas); reading its payloads and writing its predictions are the text functions of
`label_studio.py`. Errors keep reftag's error format, but Label Studio shows none of it: only
"<status> Client Error: … check the ML backend server console logs". So every 4xx here is also
logged at WARNING with its reason and the label set's id (`log_refusal`): reftag's log is that
console.
`/predict` never loads a model in the web tier, and pins the adapter version for the whole
request. Up to `predict_via_tag_above` tasks go to the `predict` queue in batches of
`max_predict_items` (grouped by length, so each is about one model batch), all sent at once;
more run as a tag job (chunks on the `tag` queue, results in the database, listed with the
tenant's jobs, `detail.made_by` "label_studio_predict"), which this request waits for — so one
project's "Retrieve predictions" cannot fill the `predict` queue that other tenants' synchronous
predictions share. Either way each batch or chunk has `predict_timeout` seconds after the one
before it: a long list takes as long as the work, and a stalled worker is a 504 in seconds.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, g, request
from pydantic import BaseModel, ConfigDict, Field

from store import adapters, jobs, label_sets
from store import label_studio as label_studio_tasks
from store.errors import StoreError
from store.label_studio import Annotated
from store.models import Adapter, Job, JobStatus, JobType, LabelSetKind, as_utc

from .. import auth, broker
from ..db import read_transaction, transaction
from ..errors import ApiError, invalid
from ..openapi import operation
from ..requests import CountLimit, RequestModel, blank, parse_body, settings, too_many, validate
from ..v1.schemas import ExamplesUpload, JobOut, job_json
from . import label_studio, label_studio_pull
from .document import ReadOptions, model_version
from .label_studio import LabelConfig, annotation_choices, annotation_spans, check_choices, label_config, task_texts

log = logging.getLogger("reftag.label_studio")
bp = Blueprint("label_studio", __name__, url_prefix="/ls/<id:label_set_id>")
bp.before_request(auth.require_tenant_bearer_or_basic)


@bp.before_request
def require_json_body() -> None:
    """A POST here is JSON and says so (Label Studio sends `application/json`). Read whatever the
    Content-Type, a cross-site `<form enctype="text/plain">` could post JSON-shaped text to
    /webhook or /train with credentials the browser remembers; such a form cannot send a JSON type."""
    if request.method == "POST" and not is_json_type(request.mimetype):
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as JSON with `Content-Type: application/json` "
                       f"(this request says {request.mimetype or 'nothing'!r})")


def is_json_type(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))

ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
# `detail.made_by` of a tag job that a large /predict ran as.
PREDICT_JOB_MAKER = "label_studio_predict"
LS_ERRORS = (400, 401, 404, 409, 413, 415, 422)


# --- Label Studio's request shapes ------------------------------------------------------------


class LabelStudioBody(RequestModel):
    # Label Studio adds fields from version to version; reftag reads only the ones it names.
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)


class PredictBody(LabelStudioBody):
    """What Label Studio sends to /predict."""

    # counted on the JSON as sent, before a million tasks are validated one by one
    count_limit = CountLimit("tasks", "max_job_items", "REFTAG_MAX_JOB_ITEMS")
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

    count_limit = CountLimit("annotations", "max_examples_per_request", "REFTAG_MAX_EXAMPLES")
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


class VersionOut(BaseModel):
    model_version: str
    version: int
    active: bool
    created_at: str
    note: str | None = Field(description="why the version was not made active, when it was not")


class VersionsOut(BaseModel):
    versions: list[str] = Field(description="every version's model_version, newest first (what Label Studio reads)")
    model_version: str = Field(description="the active version's: what /setup, /health and predictions say")
    message: str = Field(description="which version is active, and what the latest train job decided")
    latest_train_job: JobOut | None
    detail: list[VersionOut]


class WebhookOut(BaseModel):
    status: str
    action: str
    detail: dict[str, Any]


# --- helpers ------------------------------------------------------------------------------------


def label_set_kind(label_set_id: str) -> str:
    """The label set's kind: which control of a labeling config it answers."""
    with read_transaction() as session:
        return label_sets.label_set_row(session, g.tenant_id, label_set_id).kind


def active_model_version(session: Any, label_set_id: str) -> str:
    label_set = label_sets.label_set_row(session, g.tenant_id, label_set_id)
    active = adapters.active_adapter(session, label_set.id)
    return model_version(active.version if active else None)


def training_summary(active: Adapter | None, latest: Job | None) -> str:
    """One line for a person: which version answers predictions, and what the label set's
    latest train job did — in particular a version that trained but was not made active."""
    serving = f"{model_version(active.version)} is active" if active else "no version is active yet"
    if latest is None:
        return f"{serving}; no training yet"
    if latest.status in JobStatus.unfinished():
        waiting = f", waiting for {latest.queued_after}" if latest.queued_after else ""
        return f"{serving}; training {latest.id} is {latest.status}{waiting}"
    if latest.status == JobStatus.FAILED:
        return f"{serving}; the latest training {latest.id} failed: {(latest.error or {}).get('message', '')}"
    if latest.status == JobStatus.CANCELLED:
        return f"{serving}; the latest training {latest.id} was cancelled"
    trained = model_version(latest.adapter_version)
    promotion = (latest.metrics or {}).get("promotion") or {}
    if promotion.get("promoted", True):
        return f"{serving}; the latest training made {trained}: {promotion.get('reason', 'promoted')}"
    return f"{serving}; the latest training made {trained}, {promotion.get('reason', 'not activated')}"


@contextmanager
def pointing_into_payload(where: dict[str, str]) -> Iterator[None]:
    """Errors about the example made from a Label Studio payload point into that payload
    (`where`: example pointer → payload pointer) instead of at an upload's rows."""
    try:
        yield
    except (ApiError, StoreError) as e:
        for ours, theirs in where.items():
            e.message = e.message.replace(ours + ":", theirs + ":")
        e.details = [{**d, "pointer": where.get(d["pointer"], d["pointer"])} if "pointer" in d else d
                     for d in e.details]
        raise


@bp.after_request
def log_refusal(response: Response) -> Response:
    """Every 4xx on /ls/* as a WARNING line with its reason: Label Studio shows the user only the
    status and "check the ML backend server console logs", so this line is the only place the
    reason can be read. A 401 on /webhook is how annotations get lost (the webhook Label Studio
    creates has no credentials), so its line says what to do."""
    if 400 <= response.status_code < 500:
        label_set_id = (request.view_args or {}).get("label_set_id")
        error = (response.get_json(silent=True) or {}).get("error") or {}
        hint = (" (the webhook Label Studio created has no credentials: add an Authorization header to it in "
                "the project's Settings → Webhooks, or annotations do not reach reftag)"
                if response.status_code == 401 and request.path.rstrip("/").endswith("/webhook") else "")
        log.warning("Label Studio %s %s for label set %s refused with %d %s: %s%s", request.method,
                    request.path, label_set_id, response.status_code, error.get("code"), error.get("message"), hint,
                    extra={"label_set_id": label_set_id, "status": response.status_code, "code": error.get("code")})
    return response


# --- routes -------------------------------------------------------------------------------------


@bp.get("/")
@bp.get("/health")
@operation("Label Studio: health", tag="label studio", responses={200: HealthOut}, errors=(401, 404), basic=True)
def health(label_set_id: str):
    """Auth: the API key as the Basic auth password, or as a Bearer token."""
    with read_transaction() as session:
        return {"status": "UP", "model_class": "reftag", "model_version": active_model_version(session, label_set_id)}


@bp.get("/versions")
@operation("Label Studio: model versions", tag="label studio", responses={200: VersionsOut}, errors=(401, 404),
           basic=True)
def versions(label_set_id: str):
    """Every adapter version as Label Studio names it (`reftag-v3`), newest first; which one is
    active (the one /setup and /health answer and that predicts); and what the latest train job
    decided, so a version that trained but was not promoted is not invisible."""
    with read_transaction() as session:
        stored = adapters.list_adapters(session, g.tenant_id, label_set_id)[::-1]
        latest = next(iter(jobs.list_jobs(session, g.tenant_id, label_set_id, job_type=JobType.TRAIN, limit=1)), None)
        active = next((a for a in stored if a.is_active), None)
        return {
            "versions": [model_version(a.version) for a in stored],
            "model_version": model_version(active.version if active else None),
            "message": training_summary(active, latest),
            "latest_train_job": job_json(latest) if latest else None,
            "detail": [{"model_version": model_version(a.version), "version": a.version, "active": a.is_active,
                        "created_at": as_utc(a.created_at).isoformat(), "note": a.note} for a in stored],
        }


@bp.post("/setup")
@operation("Label Studio: set up a project", tag="label studio", body=SetupBody, responses={200: SetupOut},
           errors=LS_ERRORS, basic=True)
def setup(label_set_id: str):
    """Checks the project's labeling config against the label set (same choices, or for a spans
    set the same <Labels>, as labels) and answers the active adapter's version."""
    body = parse_body(SetupBody)
    with read_transaction() as session:
        label_set = label_sets.label_set_row(session, g.tenant_id, label_set_id)
        config = label_config(body.labeling_config, "/schema", label_set.kind)
        check_choices(config, [label.name for label in label_set.labels], "/schema")
        version = active_model_version(session, label_set_id)
    log.info("Label Studio project %s set up on label set %s: <%s name=%r> on $%s, %s", body.project,
             label_set_id, config.tag.capitalize(), config.from_name, config.data_key, version,
             extra={"label_set_id": label_set_id})
    return {"model_version": version}


@bp.post("/predict")
@operation("Label Studio: predict tasks", tag="label studio", body=PredictBody, responses={200: PredictOut},
           errors=(*LS_ERRORS, 429, 502, 503, 504), basic=True)
def predict(label_set_id: str):
    """One prediction per task, in order, by the active adapter: `{"result": [{from_name,
    to_name, "type": "choices", "value": {"choices"}}], "score", "model_version"}`; for a spans
    set one region per span, `{from_name, to_name, "type": "labels", "value": {"start", "end",
    "text", "labels": [label]}, "score"}` (offsets in UTF-16 units, as Label Studio counts), the
    prediction's score the result's confidence."""
    body = parse_body(PredictBody)
    with read_transaction() as session:
        kind = label_sets.label_set_row(session, g.tenant_id, label_set_id).kind
        config = label_config(body.label_config, "/label_config", kind)
        if len(body.tasks) > settings().max_job_items:
            raise too_many("tasks", len(body.tasks), settings().max_job_items, "/tasks", "REFTAG_MAX_JOB_ITEMS")
        # The model reads the first max_length tokens only; a longer text would be cut anyway.
        texts = [text[: settings().max_text_chars] for text in task_texts(body.tasks, config.data_key)]
        version = adapters.resolve_adapter(session, g.tenant_id, label_set_id, None).version
    asked = [i for i, text in enumerate(texts) if not blank(text)]  # nothing to read: an empty answer
    answers = predict_texts(label_set_id, version, [texts[i] for i in asked],
                            label_studio.task_ids([body.tasks[i] for i in asked]), body.project)
    by_task: dict[int, dict[str, Any]] = dict(zip(asked, answers))
    nothing: dict[str, Any] = {"labels": [], "spans": [], "scores": {}, "confidence": None, "adapter_version": version}
    if kind == LabelSetKind.SPANS:
        return {"results": [label_studio.span_prediction(by_task.get(i, nothing), text, config.from_name,
                                                         config.to_name) for i, text in enumerate(texts)]}
    return {"results": [label_studio.prediction(by_task.get(i, nothing), config.from_name, config.to_name)
                        for i in range(len(texts))]}


def predict_texts(label_set_id: str, version: int, texts: list[str], task_ids: list[str],
                  project: str | int | None) -> list[dict[str, Any]]:
    """A few texts through the `predict` queue; more than `predict_via_tag_above` as a tag job
    (items named by task id) that the tenant sees in its job list, marked as made by /predict."""
    if len(texts) <= settings().predict_via_tag_above:
        return broker.predict_many(g.tenant_id, label_set_id, version, texts, settings().max_predict_items,
                                   settings().predict_timeout)
    log.info("Label Studio /predict of %d tasks on label set %s runs as a tag job", len(texts), label_set_id,
             extra={"label_set_id": label_set_id})
    return broker.predict_by_tag_job(g.tenant_id, label_set_id, version,
                                     [(task_id, text, None) for task_id, text in zip(task_ids, texts, strict=True)],
                                     settings().chunk_size, settings().predict_timeout,
                                     detail={"made_by": PREDICT_JOB_MAKER, "project": project})


@bp.post("/webhook")
@operation("Label Studio: webhook", tag="label studio", body=WebhookBody, responses={200: WebhookOut, 201: WebhookOut},
           errors=(*LS_ERRORS, 503), basic=True)
def webhook(label_set_id: str):
    """`ANNOTATION_CREATED` / `ANNOTATION_UPDATED`: the annotation's choices become the example of
    the task's text (sent again, it is a duplicate; updated, the example takes the new labels).
    `START_TRAINING`: a train job, as `POST /v1/label-sets/{id}/train`. Other actions: 200, ignored."""
    body = parse_body(WebhookBody)
    if body.action == "START_TRAINING":
        pulled = label_studio_pull.pull_before_training(label_set_id)
        job, created = start_training(label_set_id)
        detail = {"train_job": job, **({"pulled": pulled} if pulled is not None else {})}
        return {"status": "ok", "action": body.action, "detail": detail}, 201 if created else 200
    if body.action not in ANNOTATION_EVENTS:  # Label Studio sends its ML backend every action
        return {"status": "ignored", "action": body.action, "detail": {}}
    if not isinstance(body.annotation, dict) or not isinstance(body.task, dict):
        raise invalid([{"pointer": "/task" if isinstance(body.annotation, dict) else "/annotation",
                        "message": f"{body.action} needs the annotation and its task as objects "
                                   "(Label Studio 1.4 and later send both)"}])
    if body.annotation.get("was_cancelled"):
        return {"status": "ignored", "action": body.action, "detail": {"reason": "the task was skipped"}}
    config = label_config((body.project or {}).get("label_config"), "/project/label_config",
                          label_set_kind(label_set_id))
    stored = store_annotation(label_set_id, body.annotation, body.task, config, body.action == "ANNOTATION_UPDATED")
    if "reason" in stored:
        return {"status": "ignored", "action": body.action, "detail": stored}
    if stored.get("added") or stored.get("relabelled"):
        broker.retrain_if_due(g.tenant_id, label_set_id)
    return {"status": "ok", "action": body.action, "detail": stored}, 201


@bp.post("/train")
@operation("Label Studio: train on annotated tasks", tag="label studio", body=TrainBody,
           responses={201: WebhookOut, 200: WebhookOut},
           errors=(*LS_ERRORS, 503), basic=True)
def train(label_set_id: str):
    """Stores the annotated tasks as examples (rows with no annotation are skipped), then
    starts a train job."""
    body = parse_body(TrainBody)
    config = label_config(body.label_config, "/label_config", label_set_kind(label_set_id))
    upload = label_studio.tasks_as_examples(body.annotations, ReadOptions(config.data_key, config.from_name))
    with upload.errors_at_source_rows():
        examples = validate(ExamplesUpload, upload.document)
        with transaction() as session:
            added = label_sets.add_examples(session, g.tenant_id, label_set_id, examples.pairs())
    pulled = label_studio_pull.pull_before_training(label_set_id)
    job, created = start_training(label_set_id)
    return {"status": "ok", "action": "TRAIN",
            "detail": {"added": added.added, "duplicates": added.duplicates, "skipped": upload.skipped,
                       "train_job": job, **({"pulled": pulled} if pulled is not None else {})}}, 201 if created else 200


def start_training(label_set_id: str) -> tuple[dict[str, Any], bool]:
    """A train job as `POST /v1/label-sets/{id}/train` makes it (requests coalesce), and whether
    this request made it."""
    with transaction() as session:
        job, created = jobs.create_train_job(session, g.tenant_id, label_set_id, {}, settings().min_examples_per_label)
    if created and job.queued_after is None:
        broker.submit_train(job.id)
    return job_json(job), created


def store_annotation(label_set_id: str, annotation: dict[str, Any], task: dict[str, Any], config: LabelConfig,
                     relabel: bool) -> dict[str, Any]:
    """The annotation's choices as the example of the task's text, checked as any upload's
    examples are, and remembered as the task's (so a pull later finds it, and a deleted
    annotation removes it). Sent again it is a duplicate; another annotation of the same text
    (`relabel`: an update) gives the example its choices. An annotation that chooses nothing
    stores nothing. For a spans set (`config.tag` "labels") the annotation's `labels` regions are
    the example's spans; one that marks none is a text with no span."""
    [text] = task_texts([task], config.data_key, at="/task")
    if config.tag == "labels":
        return store_span_annotation(label_set_id, annotation, task, config, text)
    labels, choice_pointers = annotation_choices(annotation, config.from_name)
    if not labels:
        return {"labels": [], "reason": f"the annotation chooses nothing in <Choices name={config.from_name!r}>"}
    where = {"/examples/0/text": f"/task/data/{config.data_key}", "/examples/0/label": choice_pointers[0],
             **{f"/examples/0/labels/{j}": pointer for j, pointer in enumerate(choice_pointers)}}
    with pointing_into_payload(where):
        example = validate(ExamplesUpload, {"examples": [{"text": text, "labels": labels}]})
        with transaction() as session:
            task_id, annotation_id = task.get("id"), annotation.get("id")
            if isinstance(task_id, int):
                [(text, labels, _)] = example.pairs()
                stored = label_studio_tasks.store_annotations(session, g.tenant_id, label_set_id, [Annotated(
                    task_id, annotation_id if isinstance(annotation_id, int) else None, text, labels)], strict=True)
                return {"added": stored.added, "duplicates": stored.unchanged, "relabelled": stored.relabelled > 0,
                        "labels": labels}
            added = label_sets.add_examples(session, g.tenant_id, label_set_id, example.pairs())
            relabelled = relabel and label_sets.relabel_example(session, g.tenant_id, label_set_id, text, labels)
    return {"added": added.added, "duplicates": added.duplicates, "relabelled": relabelled, "labels": labels}


def store_span_annotation(label_set_id: str, annotation: dict[str, Any], task: dict[str, Any], config: LabelConfig,
                          text: str) -> dict[str, Any]:
    """A spans set's annotation (store_annotation): its spans, checked as an upload's are (a
    bad span's pointer names its region in the payload). Remembered by task as choices are; an
    annotation without a task id is added (a duplicate text keeps its first spans)."""
    spans, region_pointers = annotation_spans(annotation, config.from_name, text)
    where = {"/examples/0/text": f"/task/data/{config.data_key}",
             **{f"/examples/0/spans/{j}": pointer for j, pointer in enumerate(region_pointers)}}
    with pointing_into_payload(where):
        example = validate(ExamplesUpload, {"examples": [{"text": text, "spans": spans}]})
        with transaction() as session:
            task_id, annotation_id = task.get("id"), annotation.get("id")
            [(text, _, checked)] = example.pairs()
            if isinstance(task_id, int):
                stored = label_studio_tasks.store_annotations(session, g.tenant_id, label_set_id, [Annotated(
                    task_id, annotation_id if isinstance(annotation_id, int) else None, text, [], checked)],
                    strict=True)
                return {"added": stored.added, "duplicates": stored.unchanged, "relabelled": stored.relabelled > 0,
                        "spans": checked}
            added = label_sets.add_examples(session, g.tenant_id, label_set_id, example.pairs())
    return {"added": added.added, "duplicates": added.duplicates, "relabelled": False, "spans": checked}
