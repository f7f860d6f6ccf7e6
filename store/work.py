"""What workers need from the database: leases, claiming chunks, writing results, storing
adapters, reconciling.

Every function here is one transaction. The database, not a worker, remembers what is done:
a task that runs twice (a redelivered message, a reconciler's re-enqueue, a worker killed after
writing) finds its work already recorded and changes nothing.

Leases. A train job or a chunk being worked on holds `lease_expires_at`; the worker extends it
while it works. Work whose lease ran out is presumed lost and `reconcile()` hands it back to be
enqueued again. For queued work that no worker has touched, the same column is the deadline by
which a worker should have picked it up (unset: `created_at` + the lease length), so the
reconciler re-enqueues a lost message once per lease length, not on every tick. `attempts` counts
claims; past `max_attempts` the work fails with an error instead of looping forever.

Train jobs use `attempts` as a fencing token too: a worker may extend the lease or report
progress only while the job still carries the attempt number it claimed.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from .db import session_scope
from .models import Adapter, Chunk, Example, Job, JobItem, LabelSet, Result
from service.settings import get_settings

TERMINAL = ("succeeded", "failed", "cancelled")


class AdapterNotFound(LookupError):
    """The label set has no such adapter version (or no active one), or is not the tenant's."""


class LeaseLost(RuntimeError):
    """The job was cancelled, finished elsewhere, or handed to another worker: stop working on it."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _utc(dt: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every datetime reftag stores is UTC.
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


def _expired(lease: datetime | None, now: datetime) -> bool:
    return lease is None or _utc(lease) <= now


def adapter_checksum(weights: bytes, config_json: str) -> str:
    return hashlib.sha256(weights + config_json.encode()).hexdigest()


def held_out_score_key(multi_label: bool) -> str:
    """The metric that decides whether a new adapter replaces the active one."""
    return "micro_f1" if multi_label else "macro_f1"


def _error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def _failpoint(name: str) -> None:
    """Test-only. With REFTAG_FAILPOINT=<name>:<file>, touch <file> and stop here until the
    process is killed: how tests kill a worker at one exact point (inside the transaction that
    stores an adapter). Nothing sets it outside tests."""
    point, _, marker = os.environ.get("REFTAG_FAILPOINT", "").partition(":")
    if point == name:
        Path(marker).touch()
        while True:
            time.sleep(1)


# ---------------------------------------------------------------------------------------------
# Train jobs


@dataclass(frozen=True)
class TrainWork:
    job_id: str
    attempt: int
    tenant_id: str
    label_set_id: str
    multi_label: bool
    label_names: list[str]
    texts: list[str]
    labels: list[Any]  # list[str] single-label, list[list[str]] multi-label
    config: dict[str, Any]


def lease_train_job(job_id: str) -> TrainWork | None:
    """Claim a train job for this worker and read everything training needs.

    None when there is nothing to do: unknown job, already finished or cancelled, held by a live
    lease elsewhere, or out of attempts (then the job is marked failed)."""
    settings = get_settings()
    now = utcnow()
    with session_scope() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None or job.type != "train" or job.status in TERMINAL:
            return None
        if job.status == "running" and not _expired(job.lease_expires_at, now):
            return None
        job.attempts += 1
        if job.attempts > settings.max_attempts:
            _finish(job, "failed", now, error=_error(
                "too_many_attempts",
                f"training was started {settings.max_attempts} times and never finished; "
                f"last error: {job.detail.get('last_error', 'worker lost')}",
            ))
            return None
        job.status = "running"
        job.lease_expires_at = now + timedelta(seconds=settings.train_lease_seconds)
        job.started_at = job.started_at or now
        label_set = s.get(LabelSet, job.label_set_id)
        rows = s.execute(
            select(Example.text, Example.labels).where(Example.label_set_id == job.label_set_id).order_by(Example.id)
        ).all()
        multi = label_set.multi_label
        return TrainWork(
            job_id=job.id,
            attempt=job.attempts,
            tenant_id=job.tenant_id,
            label_set_id=label_set.id,
            multi_label=multi,
            label_names=[label.name for label in label_set.labels],
            texts=[r.text for r in rows],
            labels=[list(r.labels) if multi else r.labels[0] for r in rows],
            config={**(label_set.config or {}), **(job.config or {})},
        )


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
            .where(Job.id == job_id, Job.attempts == attempt, Job.status == "running")
            .values(**values)
        ).rowcount
    if not hit:
        raise LeaseLost(job_id)


class TrainProgress:
    """The `progress` callback for reft_core.train: keeps the latest report and a loss history,
    and writes them to the job's `detail` at most once per `interval` seconds (and always for the
    last step). Each write also extends the lease; a lost lease raises LeaseLost, which stops
    training."""

    max_history = 200

    def __init__(self, job_id: str, attempt: int, interval: float = 1.0) -> None:
        self.job_id, self.attempt, self.interval = job_id, attempt, interval
        self.latest: dict[str, Any] = {}
        self.loss_history: list[list[float]] = []  # [step, loss]
        self._last_write: float | None = None

    def __call__(self, report: dict[str, Any]) -> None:
        self.latest = {k: report.get(k) for k in ("step", "total_steps", "epoch", "epochs", "loss", "eta_seconds")}
        if report.get("loss") is not None:
            self.loss_history.append([report.get("step"), round(float(report["loss"]), 6)])
        last = report.get("step") is not None and report.get("step") == report.get("total_steps")
        if last or self._last_write is None or time.monotonic() - self._last_write >= self.interval:
            self.flush()

    def detail(self) -> dict[str, Any]:
        history = self.loss_history
        if len(history) > self.max_history:  # keep the shape of the curve, not every step
            stride = -(-len(history) // self.max_history)
            history = history[::stride] + ([history[-1]] if (len(history) - 1) % stride else [])
        return {**self.latest, "attempt": self.attempt, "loss_history": history}

    def flush(self) -> None:
        self._last_write = time.monotonic()
        renew_train_lease(self.job_id, self.attempt, self.detail())


@dataclass(frozen=True)
class StoredAdapter:
    version: int
    is_active: bool
    note: str | None


def store_adapter(
    job_id: str,
    weights: bytes,
    config_json: str,
    metrics: dict[str, Any],
    param_count: int,
    detail: dict[str, Any] | None = None,
) -> StoredAdapter | None:
    """Store a trained adapter and finish its train job, in one transaction.

    The adapter gets the label set's next version number. It becomes active if it is the first,
    or if its held-out score is at least the active one's; otherwise it stays inactive with a
    note that says why. A job stores at most one adapter (unique `train_job_id`): a retried job
    that finds its adapter already stored returns it unchanged. None if the job was cancelled
    or failed meanwhile."""
    now = utcnow()
    with session_scope() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None:
            return None
        existing = s.scalar(select(Adapter).where(Adapter.train_job_id == job_id))
        if existing is not None:
            return StoredAdapter(existing.version, existing.is_active, existing.note)
        if job.status not in ("queued", "running"):
            return None
        # Lock the label set so that two train jobs finishing at once take turns for a version.
        label_set = s.get(LabelSet, job.label_set_id, with_for_update=True)
        version = (s.scalar(select(func.max(Adapter.version)).where(Adapter.label_set_id == label_set.id)) or 0) + 1
        active = s.scalar(select(Adapter).where(Adapter.label_set_id == label_set.id, Adapter.is_active.is_(True)))
        key = held_out_score_key(label_set.multi_label)
        score = metrics.get(key)
        note = None
        if active is None:
            make_active = True
        else:
            active_score = (active.metrics or {}).get(key)
            make_active = active_score is None or (score is not None and score >= active_score)
            if make_active:
                active.is_active = False
            else:
                note = (
                    f"not activated: held-out {key} {score:.4f} is below active version "
                    f"{active.version}'s {active_score:.4f}" if score is not None
                    else f"not activated: no held-out {key} to compare with active version {active.version}"
                )
        s.flush()  # the old active row is inactive before the new one is written
        s.add(Adapter(
            label_set_id=label_set.id,
            version=version,
            is_active=make_active,
            weights=weights,
            config_json=config_json,
            checksum=adapter_checksum(weights, config_json),
            metrics=metrics,
            param_count=param_count,
            size_bytes=len(weights) + len(config_json.encode()),
            train_job_id=job_id,
            note=note,
        ))
        job.adapter_version = version
        job.metrics = {**metrics, "adapter_version": version, "activated": make_active, "note": note}
        if detail is not None:
            job.detail = detail
        _finish(job, "succeeded", now)
        s.flush()
        _failpoint("store_adapter")  # everything written, nothing committed
        return StoredAdapter(version, make_active, note)


def fail_train_job(job_id: str, code: str, message: str) -> None:
    """A train job that cannot succeed however often it is retried (bad config, bad data)."""
    with session_scope() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is not None and job.status not in TERMINAL:
            _finish(job, "failed", utcnow(), error=_error(code, message))


def release_train_job(job_id: str, attempt: int, message: str) -> None:
    """Give a train job back after an error that a retry may not repeat (out of memory, a lost
    connection): it is queued again and the reconciler re-enqueues it; `attempts` caps retries."""
    with session_scope() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None or job.status != "running" or job.attempts != attempt:
            return
        job.status = "queued"
        job.lease_expires_at = utcnow()
        job.detail = {**(job.detail or {}), "last_error": message}


def _finish(job: Job, status: str, now: datetime, error: dict[str, Any] | None = None) -> None:
    job.status = status
    job.finished_at = now
    job.lease_expires_at = None
    if error is not None:
        job.error = error


# ---------------------------------------------------------------------------------------------
# Tag jobs


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


@dataclass(frozen=True)
class ResultRow:
    position: int
    item_id: str
    labels: list[str]
    scores: dict[str, float]
    needs_review: bool
    adapter_version: int | None
    error: str | None = None


def claim_chunk(job_id: str, index: int) -> ChunkWork | None:
    """Lease one chunk of a tag job and read its items.

    None when there is nothing to do: the job is cancelled or finished, the chunk is done or
    failed, or another worker holds a live lease on it. A chunk claimed more than
    `max_attempts` times fails: each of its items gets a failed result carrying the error."""
    settings = get_settings()
    now = utcnow()
    with session_scope() as s:
        job = s.get(Job, job_id, with_for_update=True)
        chunk = s.get(Chunk, (job_id, index), with_for_update=True)
        if job is None or chunk is None or job.status in TERMINAL or chunk.status in ("done", "failed"):
            return None
        if chunk.status == "running" and not _expired(chunk.lease_expires_at, now):
            return None
        chunk.attempts += 1
        if chunk.attempts > settings.max_attempts:
            error = f"gave up after {settings.max_attempts} attempts: {chunk.error or 'worker lost'}"
            _fail_chunk_items(s, job, chunk, error, now)
            return None
        if job.adapter_version is None:  # the API pins it at submission; never serve "whatever is active now"
            job.adapter_version = s.scalar(
                select(Adapter.version).where(Adapter.label_set_id == job.label_set_id, Adapter.is_active.is_(True))
            )
        chunk.status = "running"
        chunk.lease_expires_at = now + timedelta(seconds=settings.chunk_lease_seconds)
        if job.status == "queued":
            job.status = "running"
        job.started_at = job.started_at or now
        items = s.execute(
            select(JobItem.position, JobItem.item_id, JobItem.text)
            .where(JobItem.job_id == job_id, JobItem.chunk == chunk.index)
            .order_by(JobItem.position)
        ).all()
        return ChunkWork(
            job_id=job_id,
            index=index,
            attempt=chunk.attempts,
            tenant_id=job.tenant_id,
            label_set_id=job.label_set_id,
            adapter_version=job.adapter_version,
            positions=[r.position for r in items],
            item_ids=[r.item_id for r in items],
            texts=[r.text for r in items],
        )


def write_chunk_results(job_id: str, index: int, rows: list[ResultRow]) -> int:
    """Write a chunk's results and count them, in one transaction. Results are keyed by
    (job, position): rows already there are skipped and `done` grows by the rows actually
    inserted, so a chunk written twice writes and counts once. Returns that number."""
    with session_scope() as s:
        job = s.get(Job, job_id, with_for_update=True)  # one writer per job at a time
        chunk = s.get(Chunk, (job_id, index))
        if job is None or chunk is None:
            return 0
        inserted = _insert_new_results(s, job_id, rows)
        ok = sum(1 for r in inserted if r.error is None)
        s.execute(update(Job).where(Job.id == job_id).values(
            done=Job.done + ok, failed=Job.failed + (len(inserted) - ok)
        ))
        if chunk.status != "failed":
            chunk.status = "done"
        chunk.lease_expires_at = None
        s.flush()
        _finish_if_complete(s, job, utcnow())
        return len(inserted)


def release_chunk(job_id: str, index: int, error: str) -> None:
    """Give a chunk back after an error: pending again, with its lease already expired so the
    reconciler re-enqueues it on its next pass. `attempts` caps the retries."""
    with session_scope() as s:
        chunk = s.get(Chunk, (job_id, index), with_for_update=True)
        if chunk is not None and chunk.status == "running":
            chunk.status = "pending"
            chunk.error = error
            chunk.lease_expires_at = utcnow()


def fail_chunk(job_id: str, index: int, error: str) -> int:
    """Fail a chunk for good (its adapter is missing or corrupt): every item not yet answered
    gets a failed result with the error. Returns the number of failed results written."""
    now = utcnow()
    with session_scope() as s:
        job = s.get(Job, job_id, with_for_update=True)
        chunk = s.get(Chunk, (job_id, index), with_for_update=True)
        if job is None or chunk is None or chunk.status in ("done", "failed"):
            return 0
        return _fail_chunk_items(s, job, chunk, error, now)


def _fail_chunk_items(s: Session, job: Job, chunk: Chunk, error: str, now: datetime) -> int:
    items = s.execute(
        select(JobItem.position, JobItem.item_id)
        .where(JobItem.job_id == job.id, JobItem.chunk == chunk.index)
    ).all()
    rows = [ResultRow(r.position, r.item_id, [], {}, True, job.adapter_version, error) for r in items]
    inserted = _insert_new_results(s, job.id, rows)
    s.execute(update(Job).where(Job.id == job.id).values(failed=Job.failed + len(inserted)))
    chunk.status = "failed"
    chunk.error = error
    chunk.lease_expires_at = None
    s.flush()
    s.refresh(job)
    _finish_if_complete(s, job, now)
    return len(inserted)


def _insert_new_results(s: Session, job_id: str, rows: list[ResultRow]) -> list[ResultRow]:
    if not rows:
        return []
    positions = [r.position for r in rows]
    present = set(s.scalars(
        select(Result.position).where(
            Result.job_id == job_id, Result.position >= min(positions), Result.position <= max(positions)
        )
    ))
    new = [r for r in rows if r.position not in present]
    if new:
        s.execute(Result.__table__.insert(), [
            {"job_id": job_id, "position": r.position, "item_id": r.item_id, "labels": r.labels,
             "scores": r.scores, "needs_review": r.needs_review, "adapter_version": r.adapter_version,
             "error": r.error}
            for r in new
        ])
    return new


def _finish_if_complete(s: Session, job: Job, now: datetime) -> None:
    if job.status in TERMINAL:
        return
    open_chunks = s.scalar(
        select(func.count()).select_from(Chunk)
        .where(Chunk.job_id == job.id, Chunk.status.not_in(("done", "failed")))
    )
    if open_chunks:
        return
    s.refresh(job, ["done", "failed", "total"])
    if job.total and job.failed >= job.total:
        _finish(job, "failed", now, error=_error("all_items_failed", "every item of this job failed; see the results"))
    else:
        _finish(job, "succeeded", now)


# ---------------------------------------------------------------------------------------------
# Adapters for serving


@dataclass(frozen=True)
class AdapterRef:
    label_set_id: str
    version: int
    checksum: str


def adapter_ref(label_set_id: str, version: int | None = None, tenant_id: str | None = None) -> AdapterRef:
    """Which adapter serves a request: `version`, or the active one. Scoped to `tenant_id` when
    given. Raises AdapterNotFound."""
    with session_scope(readonly=True) as s:
        query = select(Adapter.version, Adapter.checksum).join(LabelSet, LabelSet.id == Adapter.label_set_id)
        query = query.where(Adapter.label_set_id == label_set_id)
        if tenant_id is not None:
            query = query.where(LabelSet.tenant_id == tenant_id)
        query = query.where(Adapter.version == version) if version is not None else query.where(Adapter.is_active.is_(True))
        row = s.execute(query).first()
    if row is None:
        what = f"version {version}" if version is not None else "an active adapter"
        raise AdapterNotFound(f"label set {label_set_id} has no {what}")
    return AdapterRef(label_set_id, row.version, row.checksum)


def adapter_bytes(ref: AdapterRef) -> tuple[bytes, str, str]:
    """(weights, config_json, stored checksum) of an adapter. The caller verifies the checksum."""
    with session_scope(readonly=True) as s:
        row = s.execute(
            select(Adapter.weights, Adapter.config_json, Adapter.checksum)
            .where(Adapter.label_set_id == ref.label_set_id, Adapter.version == ref.version)
        ).first()
    if row is None:
        raise AdapterNotFound(f"label set {ref.label_set_id} has no version {ref.version}")
    return bytes(row.weights), row.config_json, row.checksum


# ---------------------------------------------------------------------------------------------
# Reconciling


# While workers of a kind are busy, queued work waits this many lease lengths before it is re-sent.
BUSY_PATIENCE = 10


@dataclass
class Reconciled:
    chunks: list[tuple[str, int]] = field(default_factory=list)
    train_jobs: list[str] = field(default_factory=list)


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
    with session_scope() as s:
        tagging = s.scalar(select(
            select(Chunk.index).where(Chunk.status == "running", Chunk.lease_expires_at >= now).exists()
        ))
        patience = chunk_wait * (BUSY_PATIENCE if tagging else 1)
        lost = [
            and_(Chunk.status == "running", Chunk.lease_expires_at < now),
            # The pick-up deadline is (when it was set) + chunk_wait.
            and_(Chunk.status == "pending", Chunk.lease_expires_at < now - patience + chunk_wait),
            and_(Chunk.status == "pending", Chunk.lease_expires_at.is_(None), Job.created_at < now - patience),
        ]
        lost_chunks = s.execute(
            select(Chunk)
            .join(Job, Job.id == Chunk.job_id)
            .where(Job.status.in_(("queued", "running")), or_(*lost))
            .order_by(Job.created_at, Chunk.job_id, Chunk.index)
            .limit(limit)
        ).scalars().all()
        for chunk in lost_chunks:
            chunk.status = "pending"
            chunk.lease_expires_at = now + chunk_wait
            found.chunks.append((chunk.job_id, chunk.index))

        training = s.scalar(select(
            select(Job.id).where(Job.type == "train", Job.status == "running", Job.lease_expires_at >= now).exists()
        ))
        patience = train_wait * (BUSY_PATIENCE if training else 1)
        lost = [
            and_(Job.status == "running", Job.lease_expires_at < now),
            and_(Job.status == "queued", Job.lease_expires_at < now - patience + train_wait),
            and_(Job.status == "queued", Job.lease_expires_at.is_(None), Job.created_at < now - patience),
        ]
        lost_train = s.execute(
            select(Job).where(Job.type == "train", or_(*lost)).order_by(Job.created_at).limit(limit)
        ).scalars().all()
        for job in lost_train:
            job.status = "queued"
            job.lease_expires_at = now + train_wait
            found.train_jobs.append(job.id)

        # A tag job whose last chunk finished without closing it (it cannot, but cheap to check).
        stuck = s.execute(
            select(Job).where(
                Job.type == "tag",
                Job.status.in_(("queued", "running")),
                ~select(Chunk.index).where(Chunk.job_id == Job.id, Chunk.status.not_in(("done", "failed"))).exists(),
                select(Chunk.index).where(Chunk.job_id == Job.id).exists(),
            )
        ).scalars().all()
        for job in stuck:
            _finish_if_complete(s, job, now)
    return found
