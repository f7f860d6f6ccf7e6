"""What a person should look at, and what they said: a tag job's review queue, and reviews.

A result needs review when its calibrated confidence is below the threshold its adapter's
training found for the label set's `review_precision` (or, without one, when it is near a
decision boundary: reft_core's margin rule). The queue holds those results of a job that no
one has reviewed yet, most useful first:

- `uncertainty`: lowest confidence first (the chance the labels are exactly right);
- `disagreement`: smallest margin first — the model torn between two labels (single-label), or a
  label's score nearest its threshold (multi-label).

A review accepts or corrects one result. It is stored on the result (labels, when, by which API
key), and the text becomes an example of the label set carrying where it came from (job, item),
so the next training learns from it. Reviewing again replaces the first review: the result keeps
the latest answer and the example is relabelled, never added twice.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from reft_core.spans import DEFAULT_REVIEW_THRESHOLD

from . import jobs, label_sets
from .db import session_scope
from .errors import Conflict, Invalid, NotFound
from .models import ApiKey, Example, Job, JobItem, JobType, LabelSet, LabelSetKind, Result, utcnow

ORDERS = ("uncertainty", "disagreement")


def _order_column(order: str) -> Any:
    # Results from adapters trained before calibration carry no confidence: they come first.
    column = Result.confidence if order == "uncertainty" else Result.margin
    return func.coalesce(column, -1.0)


def encode_cursor(value: float, position: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([value, position]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        value, position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not isinstance(position, int):
            raise ValueError
        return float(value), position
    except (ValueError, TypeError, UnicodeDecodeError):
        raise Invalid("cursor is not one this API returned", [{"pointer": "/cursor", "in": "query"}],
                      code="invalid_cursor") from None


@dataclass
class ReviewPage:
    items: list[tuple[Result, str]]  # each result with its item's text
    next_cursor: str | None
    remaining: int  # results of the job that still need review, this page included


def _tag_job(session: Session, tenant_id: str, job_id: str) -> Job:
    job = jobs.get_job(session, tenant_id, job_id)
    if job.type != JobType.TAG:
        raise Conflict(f"job {job_id!r} is a {job.type} job; only tag jobs have results to review",
                       code="not_a_tag_job")
    return job


def review_queue(session: Session, tenant_id: str, job_id: str, order: str, limit: int,
                 cursor: str | None) -> ReviewPage:
    """Up to `limit` results that need review and have none yet, in `order`, from `cursor` on.
    Results reviewed while a client pages leave the queue without shifting its pages."""
    job = _tag_job(session, tenant_id, job_id)
    key = _order_column(order)
    waiting = and_(Result.job_id == job.id, Result.needs_review.is_(True), Result.reviewed_at.is_(None),
                   Result.error.is_(None))
    query = select(Result, JobItem.text, key).join(
        JobItem, and_(JobItem.job_id == Result.job_id, JobItem.position == Result.position)).where(waiting)
    if cursor:
        value, position = decode_cursor(cursor)
        query = query.where(or_(key > value, and_(key == value, Result.position > position)))
    rows = session.execute(query.order_by(key, Result.position).limit(limit + 1)).all()
    remaining = session.scalar(select(func.count()).select_from(Result).where(waiting)) or 0
    page = rows[:limit]
    next_cursor = encode_cursor(float(page[-1][2]), page[-1][0].position) if len(rows) > limit else None
    return ReviewPage([(result, text) for result, text, _ in page], next_cursor, remaining)


@dataclass
class Reviewed:
    result: Result
    text: str
    label_set_id: str
    example_id: int
    example_created: bool


def review_result(session: Session, tenant_id: str, job_id: str, item_id: str, labels: Sequence[str],
                  api_key_id: int | None) -> Reviewed:
    """Record a person's labels for one result and make (or relabel) the example of its text."""
    job = _tag_job(session, tenant_id, job_id)
    item = session.scalar(select(JobItem).where(JobItem.job_id == job.id, JobItem.item_id == item_id))
    if item is None:
        raise NotFound(f"item {item_id!r} is not in job {job_id!r}", [{"pointer": "/item_id", "in": "path"}],
                       code="item_not_found")
    result = session.get(Result, (job.id, item.position))
    if result is None or result.error is not None:
        reason = "has not been tagged yet" if result is None else "failed to be tagged"
        raise Conflict(f"item {item_id!r} {reason}; review it once it has a result", code="item_not_tagged")
    label_set = label_sets.label_set_row(session, tenant_id, job.label_set_id)
    label_sets.require_kind(label_set, LabelSetKind.CLASSIFICATION,
                            "reviewing a result with labels (for a spans set, add the corrected spans as an example)")
    names = list(dict.fromkeys(labels))
    known = [label.name for label in label_set.labels]
    unknown = [name for name in names if name not in known]
    pointer = "/labels" if label_set.multi_label else "/label"
    if unknown:
        raise Invalid(f"unknown label {unknown[0]!r}; the set's labels: {', '.join(known[:50])}",
                      [{"pointer": pointer, "label": name} for name in unknown], code="unknown_label")
    if not label_set.multi_label and len(names) != 1:
        raise Invalid("a single-label set takes exactly one label: send {\"label\": name}", [{"pointer": "/label"}],
                      code="invalid_review")
    result.reviewed_labels = names
    result.reviewed_at = utcnow()
    result.reviewed_by = api_key_id
    example = session.scalar(select(Example).where(Example.label_set_id == label_set.id,
                                                   Example.text_hash == label_sets.text_hash(item.text)))
    created = example is None
    if example is None:
        label_sets.add_examples(session, tenant_id, label_set.id, [(item.text, names)])
        example = session.scalar(select(Example).where(Example.label_set_id == label_set.id,
                                                       Example.text_hash == label_sets.text_hash(item.text)))
        assert example is not None
        example.source_job_id, example.source_item_id = job.id, item.item_id
    else:
        label_sets.relabel(example, names, key_prefixes(session, [api_key_id]).get(api_key_id or 0),
                           f"reviewed in job {job.id}")
        if example.source_job_id is not None or example.source_item_id is not None:
            # made by an earlier review (of this or another job): it now comes from this one
            example.source_job_id, example.source_item_id = job.id, item.item_id
    session.flush()
    return Reviewed(result, item.text, label_set.id, example.id, created)


def review_counts(session: Session, job_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per tag job: results that needed review, and how many of them or of the others people
    reviewed."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(Result.job_id,
               func.sum(case((Result.needs_review.is_(True), 1), else_=0)),
               func.count(Result.reviewed_at))
        .where(Result.job_id.in_(list(job_ids))).group_by(Result.job_id)).all()
    return {job_id: {"needs_review": int(needs or 0), "reviewed": int(reviewed or 0)}
            for job_id, needs, reviewed in rows}


def key_prefixes(session: Session, key_ids: Sequence[int | None]) -> dict[int, str]:
    ids = sorted({k for k in key_ids if k is not None})
    if not ids:
        return {}
    return {key_id: prefix for key_id, prefix in session.execute(
        select(ApiKey.id, ApiKey.prefix).where(ApiKey.id.in_(ids))).all()}


def label_set_review_precision(label_set_id: str) -> float | None:
    with session_scope(readonly=True) as session:
        return session.scalar(select(LabelSet.review_precision).where(LabelSet.id == label_set_id))


def label_set_span_review_threshold(label_set_id: str) -> float:
    with session_scope(readonly=True) as session:
        return float(session.scalar(select(LabelSet.span_review_threshold).where(LabelSet.id == label_set_id))
                     or DEFAULT_REVIEW_THRESHOLD)
