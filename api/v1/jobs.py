"""Tag jobs (and reading any job): submit, poll, page or stream results, cancel."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request, stream_with_context
from sqlalchemy.orm import Session

from store import jobs, label_sets, results, reviews
from store.models import JobType

from .. import broker, db, interop
from ..db import read_transaction, transaction
from ..errors import ApiError
from ..openapi import operation
from ..requests import json_body, parse_query, settings, validate
from . import loop
from .schemas import (
    JobCreate,
    JobList,
    JobListQuery,
    JobOut,
    ResultsPageOut,
    ResultsQuery,
    ReviewedOut,
    ReviewIn,
    ReviewQuery,
    ReviewQueueOut,
    job_json,
    result_json,
)

bp = Blueprint("jobs", __name__, url_prefix="/jobs")

IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotency_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not (0 < len(key) <= 200 and key.isprintable()):
        raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key must be 1-200 printable characters",
                       [{"pointer": "/Idempotency-Key", "in": "header"}])
    return key


@bp.post("")
@operation("Submit a tag job", tag="jobs", body=JobCreate, responses={202: JobOut}, errors=(404, 409, 429, 503),
           headers={IDEMPOTENCY_HEADER: "same key + same body → the same job; same key + another body → 409"})
def create_job():
    """Items are tagged with the pinned `adapter_version`, else the set's active adapter.
    An item without `id` gets its position ("0", "1", …). Answers 202 with the job; 429 (with
    Retry-After) when the tenant's unfinished jobs would hold more than
    REFTAG_MAX_QUEUED_ITEMS_PER_TENANT items without a result."""
    raw = json_body()
    body = validate(JobCreate, raw)
    with transaction() as session:
        job, created = jobs.create_tag_job(
            session, g.tenant_id, body.label_set_id, body.rows(), settings().chunk_size,
            adapter_version=body.adapter_version, idempotency_key=idempotency_key(),
            request_hash=jobs.request_fingerprint(raw), max_queued_items=settings().max_queued_items_per_tenant,
        )
        chunks = jobs.chunk_indexes(session, job.id) if created else []
    if not created:
        return job_json(job), 202, {"Idempotent-Replayed": "true"}
    broker.submit_tag(job.id, chunks)
    return job_json(job), 202


@bp.get("")
@operation("List jobs, newest first", tag="jobs", query=JobListQuery, responses={200: JobList}, errors=(422,))
def list_jobs():
    """The tenant's train and tag jobs, newest first: `limit` of them (1-200, default 50),
    optionally only those of one `label_set_id`, `status` or `type`."""
    query = parse_query(JobListQuery)
    with read_transaction() as session:
        listed = jobs.list_jobs(session, g.tenant_id, query.label_set_id, query.status, query.type, query.limit)
        counts = reviews.review_counts(session, [job.id for job in listed])
        return {"jobs": [job_json(job, counts.get(job.id)) for job in listed]}


@bp.get("/<id:job_id>")
@operation("Get a job (train or tag)", tag="jobs", responses={200: JobOut}, errors=(404,))
def get_job(job_id: str):
    with read_transaction() as session:
        job = jobs.get_job(session, g.tenant_id, job_id)
        return job_json(job, reviews.review_counts(session, [job.id]).get(job.id))


@bp.get("/<id:job_id>/results")
@operation("Read a job's results", tag="jobs", query=ResultsQuery, responses={200: ResultsPageOut},
           response_media={interop.FORMATS[name].media_type: f"?format={name}: every result"
                           for name in interop.RESULT_FORMATS},
           errors=(404, 422))
def job_results(job_id: str):
    """A tag job's results in submission order (a suggest job's picks, an audit job's findings:
    in rank order, once it has succeeded), `limit` per page; pass `next_cursor` back as `cursor`
    until it is null (only once the job has finished and every result was returned; a
    running job's page stops at the first item not tagged yet). `?format=` streams every
    result, each with its text, instead: jsonl, csv, label_studio, label_studio_min,
    label_studio_csv, doccano or argilla (docs/api.md, "Formats")."""
    query = parse_query(ResultsQuery)
    with read_transaction() as session:
        job = jobs.get_job(session, g.tenant_id, job_id)
    if job.type in (JobType.SUGGEST, JobType.AUDIT):
        return loop.results_page(job, query) if query.format == "json" else loop.export(g.tenant_id, job, query)
    if query.format != "json":
        return export_response(g.tenant_id, job_id, query)
    with read_transaction() as session:
        page = results.results_page(session, g.tenant_id, job_id, query.cursor, query.limit)
        prefixes = reviews.key_prefixes(session, [r.reviewed_by for r in page.results])
        return {"results": [result_json(r, prefixes) for r in page.results], "next_cursor": page.next_cursor}


def export_response(tenant_id: str, job_id: str, query: ResultsQuery) -> Response:
    """Every result of the tenant's job, each with its text, streamed in `query.format` (what
    `?format=` answers here and the dashboard's download link serves)."""
    with read_transaction() as session:
        job = jobs.get_job(session, tenant_id, job_id)
        label_set = label_sets.label_set_row(session, tenant_id, job.label_set_id)
        spec = interop.ExportSpec([label.name for label in label_set.labels], label_set.multi_label,
                                  query.text_field, query.label_field, query.to_name, query.bom, kind=label_set.kind)
    rows = ({**result_json(r), "text": text}
            for r, text in results.iter_results_with_texts(db.read_transaction, tenant_id, job_id))
    form = interop.FORMATS[query.format]
    return Response(stream_with_context(iter(interop.write_results(form.name, rows, spec))),
                    mimetype=form.media_type.split(";")[0],
                    headers={"Content-Disposition": f'attachment; filename="{job_id}.{form.suffix}"'})


@bp.post("/<id:job_id>/cancel")
@operation("Cancel a job", tag="jobs", responses={202: JobOut}, errors=(404, 409))
def cancel_job(job_id: str):
    """Workers take no new chunks of a cancelled job; results already written stay readable.
    409 when the job has already finished."""
    with transaction() as session:
        cancelled = job_json(jobs.cancel_job(session, g.tenant_id, job_id))
    broker.start_waiting_train(job_id)
    return cancelled, 202


@bp.get("/<id:job_id>/review")
@operation("Results that need review, most useful first", tag="review", query=ReviewQuery,
           responses={200: ReviewQueueOut}, errors=(404, 409, 422))
def review_queue(job_id: str):
    """A tag job's results marked `needs_review` that no one has reviewed yet, each with its
    text: `order=uncertainty` (lowest confidence first, the default) or `disagreement` (the
    model nearest another answer first). Pass `next_cursor` back as `cursor`; reviewed results
    leave the queue without shifting the pages."""
    query = parse_query(ReviewQuery)
    with read_transaction() as session:
        return review_queue_json(session, g.tenant_id, job_id, query.order, query.limit, query.cursor)


def review_queue_json(session: Session, tenant_id: str, job_id: str, order: str, limit: int,
                      cursor: str | None) -> dict[str, Any]:
    """A page of the review queue as GET /v1/jobs/{id}/review answers it (and the dashboard's
    review page reads it). Queued results have no review yet: no reviewer to name."""
    page = reviews.review_queue(session, tenant_id, job_id, order, limit, cursor)
    return {"items": [{**result_json(r), "text": text, "margin": r.margin} for r, text in page.items],
            "next_cursor": page.next_cursor, "remaining": page.remaining}


@bp.post("/<id:job_id>/items/<path:item_id>/review")
@operation("Accept or correct one result", tag="review", body=ReviewIn, responses={200: ReviewedOut},
           errors=(404, 409, 422))
def review_item(job_id: str, item_id: str):
    """`{"label": name}` or `{"labels": [...]}`: a person's answer for the item. The result is
    marked reviewed (by this key, now) and the text becomes an example of the label set, with
    the job and item it came from; reviewing again replaces the answer (one example, not two)."""
    return review_as(g.tenant_id, job_id, item_id, validate(ReviewIn, json_body()), g.get("api_key_id"))


def review_as(tenant_id: str, job_id: str, item_id: str, body: ReviewIn, api_key_id: int | None) -> dict:
    """Store one review (here and from the dashboard's review page) and answer with it."""
    with transaction() as session:
        done = reviews.review_result(session, tenant_id, job_id, item_id, body.names(), api_key_id)
        prefixes = reviews.key_prefixes(session, [done.result.reviewed_by])
        answer = {"result": result_json(done.result, prefixes), "example_id": done.example_id,
                  "example_created": done.example_created}
        label_set_id = done.label_set_id
    return {**answer, "train_job_id": broker.retrain_if_due(tenant_id, label_set_id)}
