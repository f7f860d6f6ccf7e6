"""A job's whole life: created (train or tag, with a tag job's items and chunks), leased by a
worker, completed, failed or cancelled, and reconciled when its worker or its message is lost.

The database, not a worker, remembers what is done. Functions that take a `Session` are parts
of a caller's transaction (the API's request); the others, which workers call, are each one
transaction. A task that runs twice (a redelivered message, a reconciler's re-enqueue, a worker
killed after writing) finds its work already recorded and changes nothing.

Leases. A train job or a chunk being worked on holds `lease_expires_at`; the worker extends it
while it works (a heartbeat every quarter lease). Work whose lease ran out is presumed lost: the
next claim takes an expired chunk over, and `reconcile()` hands lost work back to be enqueued
again. For queued work that no worker has touched, the same column is the deadline by
which a worker should have picked it up (unset: `created_at` + the lease length), so the
reconciler re-enqueues a lost message once per lease length, not on every tick. `attempts` counts
claims; past `max_attempts` the work fails with an error instead of looping forever.

Train jobs and chunks use `attempts` as a fencing token too: a worker may extend the lease (or
report progress) only while the job or chunk still carries the attempt number it claimed.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Select, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from reft_core.config import TrainConfig
from service.settings import get_settings

from . import adapters, label_sets, results
from .db import session_scope
from .errors import Conflict, Invalid, NotFound, OverQuota
from .models import (
    Adapter,
    Chunk,
    ChunkStatus,
    Example,
    Job,
    JobItem,
    JobStatus,
    JobType,
    LabelSet,
    LabelSetKind,
    Result,
    Tenant,
    as_utc,
    utcnow,
)
from .results import ResultRow


class LeaseLost(RuntimeError):
    """The job was cancelled, finished elsewhere, or handed to another worker: stop working on it."""


def lease_expired(lease: datetime | None, now: datetime) -> bool:
    return lease is None or as_utc(lease) <= now


def _error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def finish(job: Job, status: JobStatus, now: datetime, error: dict[str, Any] | None = None) -> None:
    job.status = status
    job.finished_at = now
    job.lease_expires_at = None
    if error is not None:
        job.error = error


def _failpoint(name: str) -> None:
    """Test-only. With REFTAG_FAILPOINT=<name>:<file>, touch <file> and stop here until the
    process is killed: how tests kill a worker at one exact point (inside the transaction that
    stores an adapter). Nothing sets it outside tests."""
    point, _, marker = os.environ.get("REFTAG_FAILPOINT", "").partition(":")
    if point == name:
        Path(marker).touch()
        while True:
            time.sleep(1)


# --- creating, reading, cancelling (the API's side) -----------------------------------------------


# A label with fewer examples than this trains, with a warning on the train job.
FEW_EXAMPLES = 4


def create_train_job(
    session: Session, tenant_id: str, label_set_id: str, config: dict[str, Any], min_examples_per_label: int,
) -> tuple[Job, bool]:
    """A queued train job, and whether this request made it. Its `config` is the label set's
    overrides with the request's on top, merged here once: the job records what it trains with.
    Train requests coalesce: while a train job of the set is queued and has not started, this
    request is already part of it (it reads the examples when it starts) and that job comes back
    (created False) — unless this request names a config that differs from the queued job's
    (Conflict; a request naming none, as Label Studio's, joins whatever is queued). While one runs, a
    new job waits for it (`queued_after`; sent by `start_waiting_train_job` once the running one
    has finished) — at most one waits per set. Refuses when any label has fewer than
    `min_examples_per_label` examples (at least one: a label nobody gave an example of cannot be
    learned); a label with fewer than FEW_EXAMPLES trains with a warning on the job. The set's
    base model is resolved here if it was not yet (settings' `english_base`: what "auto" means
    for Latin-script examples)."""
    label_set = label_sets.label_set_row(session, tenant_id, label_set_id, lock=True)
    unfinished = session.scalars(select(Job).where(
        Job.label_set_id == label_set.id, Job.type == JobType.TRAIN, Job.status.in_(JobStatus.unfinished()))
        .order_by(Job.created_at)).all()
    merged = {**(label_set.config or {}), **config}
    queued = next((job for job in unfinished if job.status == JobStatus.QUEUED), None)
    if queued is not None:
        if config and (queued.config or {}) != merged:  # a request that names no config joins any
            raise Conflict(f"label set {label_set_id!r} has a train job queued (job {queued.id}) with another "
                           f"config; wait for it to start or cancel it", [{"job_id": queued.id}],
                           code="training_in_progress")
        return queued, False
    problem = TrainConfig.from_dict(merged).problem_for_set(label_set.kind, label_set.multi_label)
    if problem:
        raise Invalid(f"config: {problem} (this label set is {'multi-label ' if label_set.multi_label else ''}"
                      f"{label_set.kind})", [{"pointer": f"/config/{problem.field}", "message": problem.message}],
                      code="option_not_for_set")
    running = unfinished[0].id if unfinished else None
    counts = label_sets.label_example_counts(session, label_set)
    needed = max(1, min_examples_per_label)
    short = {name: n for name, n in counts.items() if n < needed}
    if short:
        listing = ", ".join(f"{name!r} has {n}" for name, n in short.items())
        raise Invalid(f"too few examples to train: {needed} per label are needed; {listing}",
                      [{"label": name, "examples": n, "needed": needed} for name, n in short.items()],
                      code="too_few_examples")
    few = [name for name, n in counts.items() if n < FEW_EXAMPLES]
    warnings = [{"code": "few_examples",
                 "message": f"{len(few)} label(s) have fewer than {FEW_EXAMPLES} examples; the adapter learns "
                            f"them from very little and its scores on them are rough: "
                            + ", ".join(f"{name!r} ({counts[name]})" for name in few[:20]),
                 "labels": few, "examples": {name: counts[name] for name in few}}] if few else []
    label_sets.resolve_base_model(session, label_set, get_settings().english_base)
    job = Job(tenant_id=tenant_id, type=JobType.TRAIN, label_set_id=label_set.id,
              config=merged, total=label_sets.example_count(session, label_set.id),
              warnings=warnings, queued_after=running)
    session.add(job)
    session.flush()
    return job, True


def retrain_if_due(session: Session, tenant_id: str, label_set_id: str, min_examples_per_label: int) -> Job | None:
    """Retraining on its own: once `retrain_after` examples of the set were added or relabelled
    since its latest training started, a train job is queued, as a train request naming no
    config would queue it (coalescing with any train job that is queued or running). Only for a
    set trained before (the first training is the team's call), and never while a train job is
    queued (it will read these examples when it starts). None when none was made: not due, or
    not trainable now (too few examples of a label: the next change tries again)."""
    label_set = label_sets.label_set_row(session, tenant_id, label_set_id)
    if not label_set.retrain_after:
        return None
    train_jobs = select(Job).where(Job.label_set_id == label_set.id, Job.type == JobType.TRAIN)
    if session.scalar(train_jobs.where(Job.status == JobStatus.QUEUED, Job.queued_after.is_(None)).limit(1)):
        return None
    since = session.scalar(select(func.max(Job.started_at)).where(Job.label_set_id == label_set.id,
                                                                  Job.type == JobType.TRAIN))
    if since is None:
        return None
    changed = session.scalar(select(func.count()).select_from(Example).where(
        Example.label_set_id == label_set.id, Example.updated_at > since)) or 0
    if changed < label_set.retrain_after:
        return None
    try:
        with session.begin_nested():
            job, created = create_train_job(session, tenant_id, label_set_id, {}, min_examples_per_label)
    except (Invalid, Conflict):
        return None
    return job if created else None


def request_fingerprint(body: Any) -> str:
    """SHA-256 of a request body in canonical JSON: what `Idempotency-Key` compares."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def _job_for_key(session: Session, tenant_id: str, idempotency_key: str, request_hash: str) -> Job | None:
    job = session.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == idempotency_key))
    if job is not None and job.request_hash != request_hash:
        raise Conflict("Idempotency-Key was already used with a different request body",
                       [{"job_id": job.id}], code="idempotency_conflict")
    return job


def create_tag_job(
    session: Session,
    tenant_id: str,
    label_set_id: str,
    items: Sequence[tuple[str, str, dict[str, Any] | None]],
    chunk_size: int,
    adapter_version: int | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    detail: dict[str, Any] | None = None,
    max_queued_items: int | None = None,
) -> tuple[Job, bool]:
    """Create a tag job with its items (item_id, text, meta) and chunks of `chunk_size`.
    Returns (job, created): with an `idempotency_key` already used for the same request the
    earlier job comes back with created=False; for another request, Conflict. `detail` says
    where a job came from when reftag made it for a caller (Label Studio's /predict). OverQuota
    when the tenant's unfinished tag jobs would hold more than `max_queued_items` items without a
    result (default: the setting `max_queued_items_per_tenant`); nothing is stored then."""
    if idempotency_key is not None:
        earlier = _job_for_key(session, tenant_id, idempotency_key, request_hash or "")
        if earlier is not None:
            return earlier, False
    _require_queue_room(session, tenant_id, len(items), max_queued_items)
    adapter = adapters.resolve_adapter(session, tenant_id, label_set_id, adapter_version)
    label_set = session.get_one(LabelSet, label_set_id)
    spans = label_set.kind == LabelSetKind.SPANS
    # A spans job's review threshold, as the set had it at submission, is its config's.
    job = Job(tenant_id=tenant_id, type=JobType.TAG, label_set_id=label_set_id, adapter_version=adapter.version,
              idempotency_key=idempotency_key, request_hash=request_hash, total=len(items), detail=detail or {},
              review_precision=None if spans else label_set.review_precision,
              config={"span_review_threshold": label_set.span_review_threshold} if spans else {})
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its job.
        earlier = _job_for_key(session, tenant_id, idempotency_key or "", request_hash or "")
        if earlier is None:
            raise
        return earlier, False
    chunks = chunk_of_items([text for _, text, _ in items], chunk_size)
    session.execute(insert(JobItem), [
        {"job_id": job.id, "position": i, "item_id": item_id, "text": text, "meta": meta, "chunk": chunks[i]}
        for i, (item_id, text, meta) in enumerate(items)
    ])
    sizes = Counter(chunks)
    session.execute(insert(Chunk), [{"job_id": job.id, "index": n, "size": sizes[n]} for n in sorted(sizes)])
    return job, True


# Retry-After of a job refused for the queue quota: a few chunks' time, when some room is likely.
QUEUE_FULL_RETRY_SECONDS = 30


def queued_items(session: Session, tenant_id: str) -> int:
    """Items of the tenant's unfinished tag jobs that have no result yet (what its quota counts)."""
    return session.scalar(
        select(func.coalesce(func.sum(Job.total - Job.done - Job.failed), 0))
        .where(Job.tenant_id == tenant_id, Job.type == JobType.TAG, Job.status.in_(JobStatus.unfinished()))
    ) or 0


def _require_queue_room(session: Session, tenant_id: str, adding: int, limit: int | None) -> None:
    limit = get_settings().max_queued_items_per_tenant if limit is None else limit
    session.get(Tenant, tenant_id, with_for_update=True)  # a tenant's submissions take turns
    queued = queued_items(session, tenant_id)
    if queued + adding > limit:
        raise OverQuota(
            f"this tenant's unfinished tag jobs hold {queued} items without a result; {adding} more would pass "
            f"the limit of {limit} queued items per tenant (REFTAG_MAX_QUEUED_ITEMS_PER_TENANT): retry once some "
            f"have been tagged, or cancel a job",
            [{"queued": queued, "adding": adding, "limit": limit}], code="too_many_queued_items",
            retry_after=QUEUE_FULL_RETRY_SECONDS)


def chunk_of_items(texts: Sequence[str], chunk_size: int) -> list[int]:
    """The chunk of each item: items sorted by length, `chunk_size` per chunk.

    A worker sorts a chunk's items by length before batching them, but it can only sort what
    the chunk holds: chunks cut in submission order mix short and long texts, and every batch
    pads to its longest (measured: 1.5× slower on a mixed stream). Characters stand in for
    tokens here, as the web tier has no tokenizer."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    chunks = [0] * len(texts)
    for rank, i in enumerate(order):
        chunks[i] = rank // chunk_size
    return chunks


def chunk_indexes(session: Session, job_id: str) -> list[int]:
    return list(session.scalars(select(Chunk.index).where(Chunk.job_id == job_id).order_by(Chunk.index)))


def delete_job(session: Session, job_id: str) -> None:
    """Remove a job and everything under it (used when its work could not be enqueued)."""
    for table in (Result, Chunk, JobItem):
        session.execute(delete(table).where(table.job_id == job_id))
    job = session.get(Job, job_id)
    if job is not None:
        session.delete(job)  # on the object, so that store.metric_counters counts it gone


def get_job(session: Session, tenant_id: str, job_id: str) -> Job:
    job = session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))
    if job is None:
        raise NotFound(f"job {job_id!r} not found")
    return job


def list_jobs(session: Session, tenant_id: str, label_set_id: str | None = None, status: str | None = None,
              job_type: str | None = None, limit: int = 50) -> list[Job]:
    """The tenant's newest jobs first, optionally of one label set, status or type."""
    query = select(Job).where(Job.tenant_id == tenant_id)
    if label_set_id is not None:
        query = query.where(Job.label_set_id == label_set_id)
    if status is not None:
        query = query.where(Job.status == status)
    if job_type is not None:
        query = query.where(Job.type == job_type)
    return list(session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)))


def cancel_job(session: Session, tenant_id: str, job_id: str) -> Job:
    """Mark a queued or running job cancelled; workers stop taking its chunks. Results already
    written stay readable."""
    job = get_job(session, tenant_id, job_id)
    if job.status in JobStatus.finished():
        raise Conflict(f"job {job_id!r} has already {job.status}", code="job_finished")
    finish(job, JobStatus.CANCELLED, utcnow())
    session.flush()
    return job


# --- train jobs (the workers' side) ---------------------------------------------------------------


@dataclass(frozen=True)
class ActiveVersion:
    """The version a new one is compared with: what serves now, and how it was trained."""

    version: int
    checksum: str
    metrics: dict[str, Any]
    config_json: str


@dataclass(frozen=True)
class TrainWork:
    job_id: str
    attempt: int
    tenant_id: str
    label_set_id: str
    multi_label: bool
    label_names: list[str]
    texts: list[str]
    labels: list[Any]  # list[str] single-label, list[list[str]] multi-label, spans: list[list[span dict]]
    evaluation: list[bool]  # each example's evaluation mark
    config: dict[str, Any]
    base_model: str
    active: ActiveVersion | None
    kind: str = LabelSetKind.CLASSIFICATION


def lease_train_job(job_id: str) -> TrainWork | None:
    """Claim a train job for this worker and read everything training needs.

    None when there is nothing to do: unknown job, already finished or cancelled, held by a live
    lease elsewhere, or out of attempts (then the job is marked failed)."""
    settings = get_settings()
    now = utcnow()
    with session_scope() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None or job.type != JobType.TRAIN or job.status in JobStatus.finished():
            return None
        if job.status == JobStatus.RUNNING and not lease_expired(job.lease_expires_at, now):
            return None
        if job.queued_after is not None and s.scalar(
                select(Job.status).where(Job.id == job.queued_after)) in JobStatus.unfinished():
            return None  # it waits for the version being trained; start_waiting_train_job sends it
        if not claim_single_unit(job, now, "training"):
            return None
        label_set = s.get_one(LabelSet, job.label_set_id)
        examples = label_sets.training_examples(s, label_set)
        active = s.scalar(select(Adapter).where(Adapter.label_set_id == label_set.id, Adapter.is_active.is_(True)))
        return TrainWork(
            job_id=job.id,
            attempt=job.attempts,
            tenant_id=job.tenant_id,
            label_set_id=label_set.id,
            multi_label=label_set.multi_label,
            label_names=[label.name for label in label_set.labels],
            texts=examples.texts,
            labels=examples.labels,
            evaluation=examples.evaluation,
            config=dict(job.config or {}),
            base_model=label_set.base_model_resolved
            or label_sets.resolve_base_model(s, label_set, settings.english_base),
            active=ActiveVersion(active.version, active.checksum, dict(active.metrics or {}), active.config_json)
            if active is not None else None,
            kind=label_set.kind,
        )


def claim_single_unit(job: Job, now: datetime, what: str) -> bool:
    """Lease a job one worker does whole (JobType.single_unit) for this worker: another attempt,
    running on a fresh lease. False, with the job failed, once it is out of attempts (`what`
    names the work in the error)."""
    settings = get_settings()
    job.attempts += 1
    if job.attempts > settings.max_attempts:
        finish(job, JobStatus.FAILED, now, error=_error(
            "too_many_attempts",
            f"{what} was started {settings.max_attempts} times and never finished; "
            f"last error: {job.detail.get('last_error', 'worker lost')}",
        ))
        return False
    job.status = JobStatus.RUNNING
    job.lease_expires_at = now + timedelta(seconds=settings.train_lease_seconds)
    job.started_at = job.started_at or now
    return True


def renew_train_lease(job_id: str, attempt: int, detail: dict[str, Any] | None = None) -> None:
    """Extend the lease (and record progress, if given). Raises LeaseLost when the job is no
    longer this worker's: cancelled, finished, or re-leased by another attempt."""
    settings = get_settings()
    values: dict[str, Any] = {"lease_expires_at": utcnow() + timedelta(seconds=settings.train_lease_seconds)}
    if detail is not None:
        values["detail"] = detail
    with session_scope() as s:
        hit = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempts == attempt, Job.status == JobStatus.RUNNING)
            .values(**values)
        ).rowcount  # type: ignore[attr-defined]
    if not hit:
        raise LeaseLost(job_id)


def complete_train_job(
    job_id: str,
    weights: bytes,
    config_json: str,
    metrics: dict[str, Any],
    param_count: int,
    promotion: adapters.Promotion,
    detail: dict[str, Any] | None = None,
) -> adapters.StoredAdapter | None:
    """Store a trained adapter (`adapters.add_version`: the next version, active as `promotion`
    decided) and finish its train job, in one transaction; the job's metrics say whether the
    version was promoted and why. A job stores at most one adapter (unique `train_job_id`): a
    retried job that finds its adapter already stored returns it unchanged. None if the job was
    cancelled or failed meanwhile."""
    now = utcnow()
    with session_scope() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None:
            return None
        existing = s.scalar(select(Adapter).where(Adapter.train_job_id == job_id))
        if existing is not None:
            return adapters.StoredAdapter(existing.version, existing.is_active, existing.note)
        if job.status not in JobStatus.unfinished():
            return None
        # Lock the label set so that two train jobs finishing at once take turns for a version.
        label_set = s.get_one(LabelSet, job.label_set_id, with_for_update=True)
        adapter, decided = adapters.add_version(s, label_set, job_id, weights, config_json, metrics, param_count,
                                                promotion)
        job.adapter_version = adapter.version
        job.metrics = {**metrics, "adapter_version": adapter.version, "activated": adapter.is_active,
                       "note": adapter.note, "promotion": decided.as_json()}
        if detail is not None:
            job.detail = detail
        finish(job, JobStatus.SUCCEEDED, now)
        s.flush()
        _failpoint("store_adapter")  # everything written, nothing committed
        return adapters.StoredAdapter(adapter.version, adapter.is_active, adapter.note)


def fail_train_job(job_id: str, code: str, message: str) -> None:
    """A train job that cannot succeed however often it is retried (bad config, bad data)."""
    with session_scope() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is not None and job.status not in JobStatus.finished():
            finish(job, JobStatus.FAILED, utcnow(), error=_error(code, message))


def start_waiting_train_job(finished_job_id: str) -> str | None:
    """The train job that waited for `finished_job_id`, once that one has finished (succeeded,
    failed or cancelled): it gets a pick-up deadline, and the caller enqueues it (if that message
    is lost, the reconciler sends it after the deadline). None when nothing waits, or when
    `finished_job_id` has not finished."""
    settings = get_settings()
    with session_scope() as s:
        status = s.scalar(select(Job.status).where(Job.id == finished_job_id))
        if status not in JobStatus.finished():
            return None
        waiting = s.scalar(select(Job).where(Job.queued_after == finished_job_id, Job.status == JobStatus.QUEUED)
                           .with_for_update())
        if waiting is None:
            return None
        waiting.lease_expires_at = utcnow() + timedelta(seconds=settings.train_lease_seconds)
        return waiting.id


def release_train_job(job_id: str, attempt: int, message: str) -> None:
    """Give a train job back after an error that a retry may not repeat (out of memory, a lost
    connection): it is queued again and the reconciler re-enqueues it; `attempts` caps retries."""
    with session_scope() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None or job.status != JobStatus.RUNNING or job.attempts != attempt:
            return
        job.status = JobStatus.QUEUED
        job.lease_expires_at = utcnow()
        job.detail = {**(job.detail or {}), "last_error": message}


# --- tag jobs' chunks (the workers' side) ---------------------------------------------------------
#
# A `tag_chunk` message is a token, "tag the next chunk": the database, not the queue's order,
# decides which (`claim_next_chunk`). Tenants share the workers by items, and each tenant's jobs
# take turns: the next chunk is one of the tenant served the fewest items lately (then the one
# served least recently), of its job served least recently (then the oldest job, the lowest
# index) — deficit round robin over a sliding window. A 10-item job submitted behind another
# tenant's 100,000 items waits for the chunk under way, not for all of them; and a tenant whose
# chunks are 256 items is not served once per round of tenants whose jobs are 10 items each (with
# turns counted by chunks it was: measured 2.42x the small jobs' p99 near capacity). A job was
# served when one of its chunks last held a lease: a running chunk's lease, or the lease a
# finished chunk ended with (its `lease_expires_at` is set to the moment its results were
# written). Only the last SERVED_MEMORY counts; whoever was served before that waits as if
# never served.

SERVED_MEMORY = timedelta(minutes=10)


@dataclass(frozen=True)
class ChunkWork:
    job_id: str
    index: int
    attempt: int
    tenant_id: str
    label_set_id: str
    adapter_version: int
    positions: list[int]
    item_ids: list[str]
    texts: list[str]
    review_precision: float | None = None  # the job's (store.reviews): auto-accept at this precision
    span_review_threshold: float | None = None  # a spans job's: needs review below this token probability


def _next_chunk(now: datetime) -> Select[Chunk]:
    """The chunk a token serves, locked (PostgreSQL skips chunks other claims hold; SQLite runs
    one writer at a time): pending, or running on a lease that ran out (its worker is gone), of
    an unfinished job; the first in the fair order above."""
    served = (
        select(Chunk.job_id, Job.tenant_id, func.max(Chunk.lease_expires_at).label("at"),
               func.sum(Chunk.size).label("n_items"))
        .join(Job, Job.id == Chunk.job_id)
        .where(Chunk.status != ChunkStatus.PENDING, Chunk.lease_expires_at > now - SERVED_MEMORY)
        .group_by(Chunk.job_id, Job.tenant_id)
        .subquery()
    )
    tenant_served = (select(served.c.tenant_id, func.max(served.c.at).label("at"),
                            func.sum(served.c.n_items).label("n_items"))
                     .group_by(served.c.tenant_id).subquery())
    return (
        select(Chunk)
        .join(Job, Job.id == Chunk.job_id)
        .outerjoin(tenant_served, tenant_served.c.tenant_id == Job.tenant_id)
        .outerjoin(served, served.c.job_id == Chunk.job_id)
        .where(Job.status.in_(JobStatus.unfinished()),
               or_(Chunk.status == ChunkStatus.PENDING,
                   and_(Chunk.status == ChunkStatus.RUNNING, Chunk.lease_expires_at < now)))
        .order_by(func.coalesce(tenant_served.c.n_items, 0), tenant_served.c.at.nulls_first(),
                  served.c.at.nulls_first(), Job.created_at, Chunk.job_id, Chunk.index)
        .limit(1)
        .with_for_update(of=Chunk, skip_locked=True)
    )


def claim_next_chunk() -> ChunkWork | None:
    """Lease the next chunk in the fair order and read its items; None when no chunk waits.
    A chunk claimed more than `max_attempts` times fails instead (each of its items gets a
    failed result carrying the error), and the one after it is claimed."""
    while True:
        now = utcnow()
        with session_scope() as s:
            chunk = s.scalar(_next_chunk(now))
            if chunk is None:
                return None
            job = s.get_one(Job, chunk.job_id, with_for_update=True)
            work = _lease_chunk(s, job, chunk, now)
            if work is not None:
                return work


def claim_chunk(job_id: str, index: int) -> ChunkWork | None:
    """Lease one named chunk of a tag job and read its items (what `claim_next_chunk` does with
    the chunk it picks). None when there is nothing to do: the job is cancelled or finished, the
    chunk is done or failed, another worker holds a live lease on it, or it has run out of
    attempts."""
    now = utcnow()
    with session_scope() as s:
        chunk = s.get(Chunk, (job_id, index), with_for_update=True)
        job = s.get(Job, job_id, with_for_update=True)
        if job is None or chunk is None or job.status in JobStatus.finished() or chunk.status in ChunkStatus.finished():
            return None
        if chunk.status == ChunkStatus.RUNNING and not lease_expired(chunk.lease_expires_at, now):
            return None
        return _lease_chunk(s, job, chunk, now)


def _lease_chunk(s: Session, job: Job, chunk: Chunk, now: datetime) -> ChunkWork | None:
    # Locks: a chunk, then its job, everywhere (PostgreSQL would otherwise deadlock a claim that
    # takes over an expired chunk with the late write of the worker that held it).
    settings = get_settings()
    job_id = job.id
    chunk.attempts += 1
    if chunk.attempts > settings.max_attempts:
        error = f"gave up after {settings.max_attempts} attempts: {chunk.error or 'worker lost'}"
        _fail_chunk_items(s, job, chunk, error, now)
        return None
    if job.adapter_version is None:  # the API pins it at submission; never serve "whatever is active now"
        active = adapters.active_adapter(s, job.label_set_id)
        job.adapter_version = active.version if active else None
    chunk.status = ChunkStatus.RUNNING
    chunk.lease_expires_at = now + timedelta(seconds=settings.chunk_lease_seconds)
    if job.status == JobStatus.QUEUED:
        job.status = JobStatus.RUNNING
    job.started_at = job.started_at or now
    items = s.execute(
        select(JobItem.position, JobItem.item_id, JobItem.text)
        .where(JobItem.job_id == job_id, JobItem.chunk == chunk.index)
        .order_by(JobItem.position)
    ).all()
    return ChunkWork(
        job_id=job_id,
        index=chunk.index,
        attempt=chunk.attempts,
        tenant_id=job.tenant_id,
        label_set_id=job.label_set_id,
        adapter_version=job.adapter_version,  # type: ignore[arg-type]
        positions=[r.position for r in items],
        item_ids=[r.item_id for r in items],
        texts=[r.text for r in items],
        review_precision=job.review_precision,
        span_review_threshold=(job.config or {}).get("span_review_threshold"),
    )


def write_chunk_results(job_id: str, index: int, rows: list[ResultRow]) -> int:
    """Write a chunk's results and count them, in one transaction. Results are keyed by
    (job, position): rows already there are skipped and `done` grows by the rows actually
    inserted, so a chunk written twice writes and counts once. Returns that number."""
    with session_scope() as s:
        chunk = s.get(Chunk, (job_id, index), with_for_update=True)
        job = s.get(Job, job_id, with_for_update=True)  # one writer per job at a time
        if job is None or chunk is None:
            return 0
        inserted = results.insert_new(s, job_id, rows)
        ok = sum(1 for r in inserted if r.error is None)
        s.execute(update(Job).where(Job.id == job_id).values(
            done=Job.done + ok, failed=Job.failed + (len(inserted) - ok)
        ))
        if chunk.status != ChunkStatus.FAILED:
            chunk.status = ChunkStatus.DONE
        chunk.lease_expires_at = utcnow()  # its lease ends now: when its job was last served
        s.flush()
        _finish_if_complete(s, job, utcnow())
        return len(inserted)


def renew_chunk_lease(job_id: str, index: int, attempt: int) -> None:
    """Extend a chunk's lease by a lease length (the tag worker's heartbeat). LeaseLost when the
    chunk is no longer this attempt's: written, released, or taken over once the lease ran out."""
    lease = timedelta(seconds=get_settings().chunk_lease_seconds)
    with session_scope() as s:
        hit = s.execute(
            update(Chunk)
            .where(Chunk.job_id == job_id, Chunk.index == index, Chunk.attempts == attempt,
                   Chunk.status == ChunkStatus.RUNNING)
            .values(lease_expires_at=utcnow() + lease)
        ).rowcount  # type: ignore[attr-defined]
    if not hit:
        raise LeaseLost(f"{job_id} chunk {index}")


def release_chunk(job_id: str, index: int, error: str) -> None:
    """Give a chunk back after an error: pending again, with its lease already expired so the
    reconciler re-enqueues it on its next pass. `attempts` caps the retries."""
    with session_scope() as s:
        chunk = s.get(Chunk, (job_id, index), with_for_update=True)
        if chunk is not None and chunk.status == ChunkStatus.RUNNING:
            chunk.status = ChunkStatus.PENDING
            chunk.error = error
            chunk.lease_expires_at = utcnow()


def fail_chunk(job_id: str, index: int, error: str) -> int:
    """Fail a chunk for good (its adapter is missing or corrupt): every item not yet answered
    gets a failed result with the error. Returns the number of failed results written."""
    now = utcnow()
    with session_scope() as s:
        chunk = s.get(Chunk, (job_id, index), with_for_update=True)
        job = s.get(Job, job_id, with_for_update=True)
        if job is None or chunk is None or chunk.status in ChunkStatus.finished():
            return 0
        return _fail_chunk_items(s, job, chunk, error, now)


def _fail_chunk_items(s: Session, job: Job, chunk: Chunk, error: str, now: datetime) -> int:
    items = s.execute(
        select(JobItem.position, JobItem.item_id)
        .where(JobItem.job_id == job.id, JobItem.chunk == chunk.index)
    ).all()
    rows = [ResultRow(r.position, r.item_id, [], {}, True, job.adapter_version, error) for r in items]
    inserted = results.insert_new(s, job.id, rows)
    s.execute(update(Job).where(Job.id == job.id).values(failed=Job.failed + len(inserted)))
    chunk.status = ChunkStatus.FAILED
    chunk.error = error
    chunk.lease_expires_at = now  # its lease ends now: when its job was last served
    s.flush()
    s.refresh(job)
    _finish_if_complete(s, job, now)
    return len(inserted)


def _finish_if_complete(s: Session, job: Job, now: datetime) -> None:
    if job.status in JobStatus.finished():
        return
    open_chunks = s.scalar(
        select(func.count()).select_from(Chunk)
        .where(Chunk.job_id == job.id, Chunk.status.not_in(ChunkStatus.finished()))
    )
    if open_chunks:
        return
    s.refresh(job, ["done", "failed", "total"])
    if job.total and job.failed >= job.total:
        finish(job, JobStatus.FAILED, now,
                error=_error("all_items_failed", "every item of this job failed; see the results"))
    else:
        finish(job, JobStatus.SUCCEEDED, now)


# --- reconciling ----------------------------------------------------------------------------------


# While workers of a kind are busy, queued work waits this many lease lengths before it is re-sent.
BUSY_PATIENCE = 10


@dataclass
class Reconciled:
    chunks: list[tuple[str, int]] = field(default_factory=list)
    train_jobs: list[str] = field(default_factory=list)
    loop_jobs: list[tuple[str, str]] = field(default_factory=list)  # (job id, type): suggest and audit jobs


def reconcile(now: datetime | None = None, limit: int = 1000) -> Reconciled:
    """Find work to enqueue again, set it back to pending/queued with a new pick-up deadline
    (so it is returned again only if that deadline passes too), and close tag jobs whose chunks
    are all finished. The caller enqueues what is returned.

    Work whose lease expired is always returned: the worker holding it is gone. Queued work that
    no worker picked up within a lease length is returned while no worker of its kind holds a
    live lease — idle workers with work left over mean the message was lost (a Redis restart, a
    crash between commit and enqueue). While workers are busy the queue is moving and the message
    is most likely still in it, behind others: it is re-sent only after `BUSY_PATIENCE` lease
    lengths, so a queue that never empties cannot starve a job whose message was lost."""
    settings = get_settings()
    now = now or utcnow()
    chunk_wait = timedelta(seconds=settings.chunk_lease_seconds)
    train_wait = timedelta(seconds=settings.train_lease_seconds)
    found = Reconciled()
    unfinished = JobStatus.unfinished()
    with session_scope() as s:
        tagging = s.scalar(select(
            select(Chunk.index).where(Chunk.status == ChunkStatus.RUNNING, Chunk.lease_expires_at >= now).exists()
        ))
        patience = chunk_wait * (BUSY_PATIENCE if tagging else 1)
        lost = [
            and_(Chunk.status == ChunkStatus.RUNNING, Chunk.lease_expires_at < now),
            # The pick-up deadline is (when it was set) + chunk_wait.
            and_(Chunk.status == ChunkStatus.PENDING, Chunk.lease_expires_at < now - patience + chunk_wait),
            and_(Chunk.status == ChunkStatus.PENDING, Chunk.lease_expires_at.is_(None),
                 Job.created_at < now - patience),
        ]
        lost_chunks = s.execute(
            select(Chunk)
            .join(Job, Job.id == Chunk.job_id)
            .where(Job.status.in_(unfinished), or_(*lost))
            .order_by(Job.created_at, Chunk.job_id, Chunk.index)
            .limit(limit)
        ).scalars().all()
        for chunk in lost_chunks:
            chunk.status = ChunkStatus.PENDING
            chunk.lease_expires_at = now + chunk_wait
            found.chunks.append((chunk.job_id, chunk.index))

        # Train, suggest and audit jobs (one worker each, on the train queue) are reconciled alike.
        single = JobType.single_unit()
        training = s.scalar(select(
            select(Job.id).where(Job.type.in_(single), Job.status == JobStatus.RUNNING,
                                 Job.lease_expires_at >= now).exists()
        ))
        patience = train_wait * (BUSY_PATIENCE if training else 1)
        lost = [
            and_(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now),
            and_(Job.status == JobStatus.QUEUED, Job.lease_expires_at < now - patience + train_wait),
            and_(Job.status == JobStatus.QUEUED, Job.lease_expires_at.is_(None), Job.created_at < now - patience),
        ]
        # A job queued after a version still being trained is not lost: it waits for it.
        before = aliased(Job)
        waiting = select(before.id).where(before.id == Job.queued_after, before.status.in_(unfinished)).exists()
        lost_train = s.execute(
            select(Job).where(Job.type.in_(single), or_(*lost), ~waiting).order_by(Job.created_at).limit(limit)
        ).scalars().all()
        for job in lost_train:
            job.status = JobStatus.QUEUED
            job.lease_expires_at = now + train_wait
            if job.type == JobType.TRAIN:
                found.train_jobs.append(job.id)
            else:
                found.loop_jobs.append((job.id, job.type))

        # A tag job whose last chunk finished without closing it (it cannot, but cheap to check).
        stuck = s.execute(
            select(Job).where(
                Job.type == JobType.TAG,
                Job.status.in_(unfinished),
                ~select(Chunk.index).where(Chunk.job_id == Job.id,
                                           Chunk.status.not_in(ChunkStatus.finished())).exists(),
                select(Chunk.index).where(Chunk.job_id == Job.id).exists(),
            )
        ).scalars().all()
        for job in stuck:
            _finish_if_complete(s, job, now)
    return found
