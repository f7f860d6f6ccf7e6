"""The labeling loop: which items to label next (suggest), which examples look mislabelled
(audit), and a person's decision on each finding. The work runs on a worker (store.loop); the
answers are read at GET /v1/jobs/{id}/results like any job's."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Blueprint, Response, g

from store import loop
from store.models import Job, JobType

from .. import broker
from ..db import read_transaction, transaction
from ..errors import ApiError
from ..interop.document import model_version
from ..openapi import operation
from ..requests import parse_body
from .schemas import (
    AuditRequest,
    FindingDecidedOut,
    FindingDecisionIn,
    JobOut,
    ResultsQuery,
    SuggestRequest,
    job_json,
    output_json,
)

bp = Blueprint("loop", __name__)

# What a suggest or audit job's results export to (`?format=`): suggestions also as Label
# Studio tasks to import, with the adapter's guess as the pre-annotation.
LOOP_FORMATS = {JobType.SUGGEST: ("jsonl", "csv", "label_studio"), JobType.AUDIT: ("jsonl", "csv")}


@bp.post("/label-sets/<id:label_set_id>/suggest")
@operation("Which items of a tag job to label next", tag="loop", body=SuggestRequest, responses={202: JobOut},
           errors=(404, 409, 422, 503))
def suggest(label_set_id: str):
    """`{"job_id": a tag job of this set, "n": 50}` queues a suggest job: a worker scores the
    job's items with the set's active adapter and picks the `n` whose labels would most improve
    it: the most uncertain (margin sampling). Items already reviewed, or whose text is already
    an example, are not picked. Read the picks at /v1/jobs/{id}/results, best first
    (`{"item_id", "text", "score", "reason", "labels"}`; `?format=label_studio` gives tasks to
    import). 422 for a job that is not a tag job of this set, 409 while the set has no adapter."""
    body = parse_body(SuggestRequest)
    with transaction() as session:
        job = loop.create_suggest_job(session, g.tenant_id, label_set_id, body.job_id, body.n)
    broker.submit_loop_job(job.id, JobType.SUGGEST)
    return job_json(job), 202


@bp.post("/label-sets/<id:label_set_id>/audit")
@operation("Which examples look mislabelled", tag="loop", body=AuditRequest, responses={202: JobOut},
           errors=(404, 422, 503))
def audit(label_set_id: str):
    """Queues an audit job: a worker trains the set's recipe once per fold (5) so that every
    example is scored by an adapter that never saw it, and cleanlab's confident learning flags
    the examples whose label those out-of-fold scores contradict. Read the findings at
    /v1/jobs/{id}/results, most suspicious first (`{"example_id", "text", "given", "suggested",
    "confidence", "given_score", "decision"}`), and decide each at
    /v1/jobs/{id}/findings/{example_id}. 422 `too_few_examples` (naming the minimum) below 20
    examples or 5 of a label."""
    parse_body(AuditRequest, allow_empty=True)
    with transaction() as session:
        job = loop.create_audit_job(session, g.tenant_id, label_set_id)
    broker.submit_loop_job(job.id, JobType.AUDIT)
    return job_json(job), 202


@bp.post("/jobs/<id:job_id>/findings/<int(max=2147483647):example_id>")
@operation("Accept an audit's fix, or keep the label", tag="loop", body=FindingDecisionIn,
           responses={200: FindingDecidedOut}, errors=(404, 409, 422))
def decide(job_id: str, example_id: int):
    """`{"decision": "accept"}` relabels the example with the suggested label(s) — its old labels
    stay in its `history` — and counts toward `retrain_after`; `{"decision": "keep"}` marks the
    finding kept. 409 when the example was relabelled since the audit."""
    body = parse_body(FindingDecisionIn)
    return decide_as(g.tenant_id, job_id, example_id, body.decision, g.get("api_key_id"))


def decide_as(tenant_id: str, job_id: str, example_id: int, decision: str, api_key_id: int | None) -> dict:
    """Record a decision on a finding (here and from the dashboard's audit page) and answer with it."""
    from store import reviews

    with transaction() as session:
        prefix = reviews.key_prefixes(session, [api_key_id]).get(api_key_id or 0)
        done = loop.decide_finding(session, tenant_id, job_id, example_id,
                                   "accepted" if decision == "accept" else "kept", api_key_id, prefix)
        answer = {"finding": output_json(done.finding),
                  "example": {"id": done.example.id, "text": done.example.text, "labels": list(done.example.labels),
                              "history": list(done.example.history or [])}}
        label_set_id = done.label_set_id
    retrain = broker.retrain_if_due(tenant_id, label_set_id) if decision == "accept" else None
    return {**answer, "train_job_id": retrain}


# --- reading a suggest or audit job's answer (GET /v1/jobs/{id}/results) ---------------------------


def results_page(job: Job, query: ResultsQuery) -> dict[str, Any]:
    with read_transaction() as session:
        page = loop.outputs_page(session, job, query.cursor, query.limit)
        return {"results": [output_json(row) for row in page.rows], "next_cursor": page.next_cursor}


def export(tenant_id: str, job: Job, query: ResultsQuery) -> Response:
    allowed = LOOP_FORMATS[JobType(job.type)]
    if query.format not in allowed:
        raise ApiError(422, "unsupported_format",
                       f"a {job.type} job's results export as json, {', '.join(allowed)}; not {query.format}",
                       [{"pointer": "/format", "in": "query"}])
    with read_transaction() as session:
        rows = [output_json(row) for row in loop.all_outputs(session, job)]
    if query.format == "jsonl":
        body: Iterable[str] = (json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        media, suffix = "application/x-ndjson", "jsonl"
    elif query.format == "csv":
        body, media, suffix = _csv(rows, query.bom), "text/csv", "csv"
    else:
        body, media, suffix = _label_studio_tasks(rows, job, query), "application/json", "json"
    return Response(body, mimetype=media, headers={"Content-Disposition": f'attachment; filename="{job.id}.{suffix}"'})


def _csv(rows: list[dict[str, Any]], bom: bool) -> Iterator[str]:
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["item_id", "text"]
    out = io.StringIO()
    writer = csv.writer(out)
    if bom:
        out.write("\ufeff")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["|".join(v) if isinstance(v, list) else ("" if v is None else v)
                         for v in (row.get(c) for c in columns)])
    yield out.getvalue()


def _label_studio_tasks(rows: list[dict[str, Any]], job: Job, query: ResultsQuery) -> Iterator[str]:
    """Tasks to import into Label Studio, in pick order: the text, the pick's score and reason
    as task data (visible in the data manager), the adapter's guess as a prediction."""
    tasks = [{"data": {query.text_field: row["text"], "item_id": row["item_id"], "reftag_score": row["score"],
                       "reftag_reason": row["reason"]},
              "predictions": [{"result": [{"from_name": query.label_field, "to_name": query.to_name,
                                           "type": "choices", "value": {"choices": row["labels"]}}],
                               "model_version": model_version(job.adapter_version)}] if row["labels"] else []}
             for row in rows]
    yield json.dumps(tasks, ensure_ascii=False)
