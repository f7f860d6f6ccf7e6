"""A tag job's results: one row per (job, item position), written once however often its chunk
runs, and read back in submission order, by page (cursor) or as a stream."""
from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import islice, takewhile
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from . import jobs, metric_counters
from .errors import Invalid
from .models import JobItem, JobStatus, Result


@dataclass(frozen=True)
class ResultRow:
    position: int
    item_id: str
    labels: list[str]
    scores: dict[str, float]
    needs_review: bool
    adapter_version: int | None
    error: str | None = None
    confidence: float | None = None
    margin: float | None = None
    spans: list[dict[str, Any]] | None = None  # spans sets: [{"start", "end", "label", "text", "score"}]


def insert_new(session: Session, job_id: str, rows: list[ResultRow]) -> list[ResultRow]:
    """Insert the rows whose position has no result yet; returns those (keyed by (job,
    position): a chunk written twice writes once), counted for /metrics by outcome."""
    if not rows:
        return []
    positions = [r.position for r in rows]
    present = set(session.scalars(
        select(Result.position).where(
            Result.job_id == job_id, Result.position >= min(positions), Result.position <= max(positions)
        )
    ))
    new = [r for r in rows if r.position not in present]
    failed = sum(1 for r in new if r.error is not None)
    metric_counters.count_items(session, len(new) - failed, failed)
    if new:
        session.execute(insert(Result), [
            {"job_id": job_id, "position": r.position, "item_id": r.item_id, "labels": r.labels,
             "scores": r.scores, "needs_review": r.needs_review, "adapter_version": r.adapter_version,
             "error": r.error, "confidence": r.confidence, "margin": r.margin, "spans": r.spans}
            for r in new
        ])
    return new


@dataclass
class ResultsPage:
    results: list[Result]
    next_cursor: str | None


def encode_cursor(position: int) -> str:
    """Opaque cursor for "results from `position` on"."""
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The first position the next page starts at; any string we did not make is Invalid."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text[:1] != "p" or not text[1:].isdigit() or len(text) > 12:
            raise ValueError
        return int(text[1:])
    except (ValueError, UnicodeDecodeError):
        raise Invalid("cursor is not one this API returned", [{"pointer": "/cursor", "in": "query"}],
                      code="invalid_cursor") from None


def results_page(session: Session, tenant_id: str, job_id: str, cursor: str | None, limit: int) -> ResultsPage:
    """Up to `limit` results in submission order, from `cursor` on.

    While the job is unfinished, chunks may complete out of order, so a page stops at the first
    position that has no result yet and `next_cursor` points there: paging a running job never
    skips a result. `next_cursor` is None only once the job has finished and every result has
    been returned (a cancelled job's unwritten items are skipped then)."""
    job = jobs.get_job(session, tenant_id, job_id)
    finished = job.status in JobStatus.finished()  # read before the rows: a result written later is not missed
    start = decode_cursor(cursor) if cursor else 0
    rows = list(session.scalars(
        select(Result).where(Result.job_id == job.id, Result.position >= start)
        .order_by(Result.position).limit(limit + 1)
    ))
    if not finished:
        contiguous = [row for offset, row in takewhile(lambda pair: pair[1].position == start + pair[0],
                                                       enumerate(rows))]
        page = contiguous[:limit]
        return ResultsPage(page, encode_cursor(start + len(page)))
    page = rows[:limit]
    return ResultsPage(page, encode_cursor(page[-1].position + 1) if len(rows) > limit else None)


def item_texts(session: Session, job_id: str, positions: Sequence[int]) -> dict[int, str]:
    """The submitted text of each item at `positions` of a job (results do not repeat it)."""
    return dict(session.execute(
        select(JobItem.position, JobItem.text).where(JobItem.job_id == job_id, JobItem.position.in_(list(positions)))
    ).all())


Transaction = Callable[[], AbstractContextManager[Session]]


def iter_results(transaction: Transaction, tenant_id: str, job_id: str, batch: int = 1000) -> Iterable[Result]:
    """Every result written so far, reading `batch` rows per short transaction (for streaming)."""
    cursor = None
    while True:
        with transaction() as session:
            page = results_page(session, tenant_id, job_id, cursor, batch)
        yield from page.results
        if page.next_cursor is None or not page.results:
            return
        cursor = page.next_cursor


def iter_results_with_texts(transaction: Transaction, tenant_id: str, job_id: str,
                            batch: int = 1000) -> Iterable[tuple[Result, str]]:
    """iter_results, each result with the text of its item (for exports that carry the text)."""
    results = iter(iter_results(transaction, tenant_id, job_id, batch))
    while page := list(islice(results, batch)):
        with transaction() as session:
            texts: dict[Any, str] = dict(session.execute(
                select(JobItem.position, JobItem.text).where(
                    JobItem.job_id == job_id, JobItem.position.between(page[0].position, page[-1].position))).all())
        yield from ((r, texts[r.position]) for r in page)
