"""The numbers GET /metrics reports from the database, kept up to date by the transactions that
change what they count, so that a scrape reads a few rows (`read`) instead of every job.

- `jobs` (a gauge): jobs by type and status. A job that is added, moves to another status or is
  deleted on its ORM object is counted when its session flushes (`count_job_changes`), whichever
  function did it: a new way to move a job on cannot forget the count. (A bulk
  `update(Job).values(status=...)` or `delete(Job)` would not be seen: change a job's status on
  the object.)
- `items_tagged` (a counter, only ever grows): results written, by outcome; `count_items` is called
  by `results.insert_new`, the one place results are written.
- `train_seconds` (a histogram): succeeded train jobs, from the first start to the adapter stored.

A transaction's changes are summed and written last, just before COMMIT, each counter row in the
same order (`write_counts`): the rows are locked only while the transaction commits, and two
transactions never wait for each other's rows in a cycle.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, UOWTransaction

from .models import Job, JobStatus, JobType, MetricCounter, as_utc

JOBS, ITEMS, TRAIN_BUCKET, TRAIN_SUM = "jobs", "items_tagged", "train_seconds_bucket", "train_seconds_sum"
TRAIN_SECONDS_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0, math.inf)
PENDING = "reftag_metric_counts"  # the transaction's changes, in Session.info


def bucket_label(bound: float) -> str:
    """A histogram bound as Prometheus writes it (`le="30.0"`, `le="+Inf"`)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def job_label(job_type: str, status: str) -> str:
    return f"{job_type}:{status}"


Changes = defaultdict[tuple[str, str], float]  # (name, label) → how much it grows (or shrinks)


def pending(session: Session) -> Changes:
    counts: Changes = session.info.setdefault(PENDING, defaultdict(float))
    return counts


def count_items(session: Session, ok: int, failed: int) -> None:
    """Results written in this transaction, by outcome."""
    counts = pending(session)
    counts[ITEMS, "ok"] += ok
    counts[ITEMS, "failed"] += failed


@event.listens_for(Session, "after_flush")
def count_job_changes(session: Session, _flush: UOWTransaction) -> None:
    """Jobs added, moved to another status, or deleted by this flush (the session still holds what
    the flush did: new, changed and deleted objects, each attribute's history)."""
    counts = pending(session)
    for job in session.new:
        if isinstance(job, Job):
            entered(counts, job, job.status or JobStatus.QUEUED)
    for job in session.deleted:
        if isinstance(job, Job):
            stored = inspect(job).attrs.status.history.deleted  # the status the row had, if changed since
            counts[JOBS, job_label(job.type, stored[0] if stored else job.status)] -= 1
    for job in session.dirty:
        if isinstance(job, Job) and (history := status_change(job)) is not None:
            before, after = history
            counts[JOBS, job_label(job.type, before)] -= 1
            entered(counts, job, after)


def entered(counts: Changes, job: Job, status: str) -> None:
    """A job now in `status`; a train job that succeeded is timed."""
    counts[JOBS, job_label(job.type, status)] += 1
    if job.type == JobType.TRAIN and status == JobStatus.SUCCEEDED and job.started_at and job.finished_at:
        seconds = max(0.0, (as_utc(job.finished_at) - as_utc(job.started_at)).total_seconds())
        counts[TRAIN_BUCKET, bucket_label(next(b for b in TRAIN_SECONDS_BUCKETS if seconds <= b))] += 1
        counts[TRAIN_SUM, ""] += seconds


def status_change(job: Job) -> tuple[str, str] | None:
    """(before, after) when this flush changed the job's status, else None."""
    history = inspect(job).attrs.status.history
    if not history.added or not history.deleted or history.added[0] == history.deleted[0]:
        return None
    return history.deleted[0], history.added[0]


@event.listens_for(Session, "before_commit")
def write_counts(session: Session) -> None:
    session.flush()  # what is still unflushed is counted too
    counts = session.info.pop(PENDING, None)
    if not counts:
        return
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[session.get_bind().dialect.name]
    table = MetricCounter.__table__
    for (name, label), delta in sorted(counts.items()):
        if delta:
            upsert = dialect.insert(table).values(name=name, label=label, value=delta)
            session.execute(upsert.on_conflict_do_update(index_elements=["name", "label"],
                                                         set_={"value": table.c.value + upsert.excluded.value}))


@event.listens_for(Session, "after_rollback")
def forget_counts(session: Session) -> None:
    session.info.pop(PENDING, None)


@dataclass(frozen=True)
class Counts:
    jobs: dict[tuple[str, str], int]  # (type, status) → jobs
    items: dict[str, int]  # outcome → results written
    train_buckets: list[tuple[float, int]]  # (bound, succeeded train jobs that took at most that), cumulative
    train_seconds: float


def read(session: Session) -> Counts:
    """Every counter, read in one query of a few rows."""
    values: dict[tuple[str, str], Any] = {(name, label): value for name, label, value in session.execute(
        select(MetricCounter.name, MetricCounter.label, MetricCounter.value))}
    jobs: dict[tuple[str, str], int] = {(t, s): 0 for t in JobType for s in JobStatus}
    for (name, label), value in values.items():
        if name == JOBS:
            job_type, _, status = label.partition(":")
            jobs[job_type, status] = round(value)
    cumulative, buckets = 0, []
    for bound in TRAIN_SECONDS_BUCKETS:
        cumulative += round(values.get((TRAIN_BUCKET, bucket_label(bound)), 0))
        buckets.append((bound, cumulative))
    return Counts(jobs=jobs, items={outcome: round(values.get((ITEMS, outcome), 0)) for outcome in ("ok", "failed")},
                  train_buckets=buckets, train_seconds=float(values.get((TRAIN_SUM, ""), 0.0)))
