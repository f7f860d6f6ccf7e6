"""Label sets, their examples, training, and their adapters."""
from __future__ import annotations

from flask import Blueprint, g, request

from store import adapters, jobs, label_sets

from .. import broker, interop
from ..db import read_transaction, transaction
from ..interop import label_studio_pull
from ..openapi import operation
from ..requests import body_text, parse_body, parse_query, settings, validate
from .schemas import (
    AdapterList,
    AdapterOut,
    ExamplesAddedOut,
    ExamplesQuery,
    ExamplesUpload,
    JobOut,
    LabelSetCreate,
    LabelSetList,
    LabelSetOut,
    LabelSetUpdate,
    TrainRequest,
    adapter_json,
    job_json,
    label_set_json,
)

bp = Blueprint("label_sets", __name__, url_prefix="/label-sets")


@bp.post("")
@operation("Create a label set", tag="label sets", body=LabelSetCreate, responses={201: LabelSetOut}, errors=(409,))
def create_label_set():
    """At least two labels with distinct names; the order of `labels` is the order of every
    score vector. `config` holds training overrides for every adapter of the set."""
    body = parse_body(LabelSetCreate)
    with transaction() as session:
        view = label_sets.create_label_set(
            session, g.tenant_id, body.name, [(label.name, label.description) for label in body.labels],
            multi_label=body.multi_label, config=body.config.overrides() if body.config else {},
            base_model=body.base_model, review_precision=body.review_precision, retrain_after=body.retrain_after,
            kind=body.kind,
        )
        return label_set_json(view), 201


@bp.get("")
@operation("List label sets", tag="label sets", responses={200: LabelSetList})
def list_label_sets():
    with read_transaction() as session:
        return {"label_sets": [label_set_json(view) for view in label_sets.list_label_sets(session, g.tenant_id)]}


@bp.get("/<id:label_set_id>")
@operation("Get a label set", tag="label sets", responses={200: LabelSetOut}, errors=(404,))
def get_label_set(label_set_id: str):
    with read_transaction() as session:
        return label_set_json(label_sets.get_label_set(session, g.tenant_id, label_set_id))


@bp.patch("/<id:label_set_id>")
@operation("Change a label set's base model or review precision", tag="label sets", body=LabelSetUpdate,
           responses={200: LabelSetOut}, errors=(404,))
def update_label_set(label_set_id: str):
    """`{"base_model": "auto" | name}`: the set's next adapter trains on that base, from scratch
    ("auto" chooses again from the examples). The versions already trained keep serving until a
    new one is promoted — compared on the same evaluation rows, each on its own base.
    `{"review_precision": 0.95 | null}`: tag jobs submitted from now on auto-accept at that
    precision (the adapter's calibration decides the threshold; no retraining).
    `{"retrain_after": 50 | null}`: how many changed examples queue a train job on their own.
    `{"span_review_threshold": 0.5}` (spans sets): results with a token less sure than this need
    review, in tag jobs submitted from now on."""
    body = parse_body(LabelSetUpdate)
    with transaction() as session:
        if "base_model" in body.model_fields_set and body.base_model is not None:
            label_sets.set_base_model(session, g.tenant_id, label_set_id, body.base_model)
        if "review_precision" in body.model_fields_set:
            label_sets.set_review_precision(session, g.tenant_id, label_set_id, body.review_precision)
        if "retrain_after" in body.model_fields_set:
            label_sets.set_retrain_after(session, g.tenant_id, label_set_id, body.retrain_after)
        if "span_review_threshold" in body.model_fields_set and body.span_review_threshold is not None:
            label_sets.set_span_review_threshold(session, g.tenant_id, label_set_id, body.span_review_threshold)
        return label_set_json(label_sets.get_label_set(session, g.tenant_id, label_set_id))


@bp.post("/<id:label_set_id>/examples")
@operation("Add labelled examples", tag="label sets", body=ExamplesUpload, responses={201: ExamplesAddedOut},
           body_media=interop.UPLOAD_MEDIA, query=ExamplesQuery, errors=(404, 415))
def add_examples(label_set_id: str):
    """JSON `{"examples": [...]}`, or JSONL / CSV chosen by Content-Type or `?format=`, which
    also takes Label Studio (label_studio, label_studio_min, label_studio_csv), doccano and
    argilla exports. A text already in the set is counted as a duplicate. Any invalid row
    rejects the whole request (422, one detail per problem); nothing is stored then. Rows with
    no label at all (tasks nobody annotated) are left out and listed in `rejected`."""
    read = interop.example_reader(request.args.get("format") or interop.format_for_media(request.mimetype))
    query = parse_query(ExamplesQuery)
    upload = read(body_text(), interop.ReadOptions(query.text_field, query.label_field, query.labels_from,
                                                   settings().max_examples_per_request))
    with upload.errors_at_source_rows():
        body = validate(ExamplesUpload, upload.document)
        with transaction() as session:
            added = label_sets.add_examples(session, g.tenant_id, label_set_id, body.pairs())
    retrain = broker.retrain_if_due(g.tenant_id, label_set_id) if added.added else None
    return {"added": added.added, "duplicates": added.duplicates, "rejected": upload.skipped,
            "train_job_id": retrain}, 201


@bp.post("/<id:label_set_id>/train")
@operation("Train a new adapter version", tag="label sets", body=TrainRequest, responses={202: JobOut, 200: JobOut},
           errors=(404, 409, 503))
def train(label_set_id: str):
    """Queues a train job (poll it at /v1/jobs/{id}); needs `min_examples_per_label` examples of
    every label. Requests coalesce: while a train job of the set is queued and not yet started,
    that job is the answer (200; it reads the examples when it starts). While one runs, a new job
    is queued after it (202, `queued_after` names the running one) — at most one waits; further
    requests get that one (200). A set connected to Label Studio pulls its annotations first."""
    body = parse_body(TrainRequest, allow_empty=True)
    label_studio_pull.pull_before_training(label_set_id)
    with transaction() as session:
        job, created = jobs.create_train_job(session, g.tenant_id, label_set_id,
                                       body.config.overrides() if body.config else {},
                                       settings().min_examples_per_label)
    if created and job.queued_after is None:
        broker.submit_train(job.id)
    return job_json(job), 202 if created else 200


@bp.get("/<id:label_set_id>/adapters")
@operation("List adapter versions", tag="adapters", responses={200: AdapterList}, errors=(404,))
def list_adapters(label_set_id: str):
    with read_transaction() as session:
        versions = adapters.list_adapters(session, g.tenant_id, label_set_id)
        active = next((a.version for a in versions if a.is_active), None)
        return {"adapters": [adapter_json(a) for a in versions], "active_version": active}


@bp.post("/<id:label_set_id>/adapters/<int(max=2147483647):version>/activate")
@operation("Activate an adapter version (promote or roll back)", tag="adapters", responses={200: AdapterOut},
           errors=(404,))
def activate_adapter(label_set_id: str, version: int):
    with transaction() as session:
        return adapter_json(adapters.activate_adapter(session, g.tenant_id, label_set_id, version))
