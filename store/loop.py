"""The labeling loop's jobs: which items of a tag job to label next (suggest), and which of a
label set's examples look mislabelled (audit).

Each is one unit of work, leased by one worker like a train job (`jobs.claim_single_unit`,
renewed by the same heartbeat, reconciled alike) on the train queue. Its answer is a ranked
list, written as `JobOutput` rows in the transaction that finishes the job: a job that runs
twice writes its answer once. A person then decides about each audit finding: accept the fix
(the example is relabelled, the old labels kept in its history) or keep the label.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from reft_core.config import AUDIT_MIN_EXAMPLES, AUDIT_MIN_PER_LABEL
from service.settings import get_settings

from . import adapters, jobs, label_sets
from .db import session_scope
from .errors import Conflict, Invalid, NotFound
from .models import Example, Job, JobItem, JobOutput, JobStatus, JobType, LabelSet, LabelSetKind, Result, utcnow

# A suggest job picks at most this many items.
MAX_SUGGEST = 10_000
# The labelled examples a suggest job compares candidates with (for diversity), newest first.
MAX_LABELLED_FOR_DIVERSITY = 5_000


# --- the API's side -------------------------------------------------------------------------------


def create_suggest_job(session: Session, tenant_id: str, label_set_id: str, tag_job_id: str, n: int) -> Job:
    """A queued suggest job over the items of `tag_job_id`, a tag job of this label set, scored
    with the set's active adapter. NotFound for an unknown job (or one of another tenant);
    Invalid for a job that is not a tag job or tags another label set; Conflict when the set has
    no adapter yet."""
    label_set = label_sets.label_set_row(session, tenant_id, label_set_id)
    label_sets.require_kind(label_set, LabelSetKind.CLASSIFICATION, "suggesting what to label next")
    tag_job = session.scalar(select(Job).where(Job.id == tag_job_id, Job.tenant_id == tenant_id))
    if tag_job is None:
        raise NotFound(f"job {tag_job_id!r} not found", [{"pointer": "/job_id"}], code="job_not_found")
    if tag_job.type != JobType.TAG:
        raise Invalid(f"job {tag_job_id!r} is a {tag_job.type} job; suggest picks among the items of a tag job",
                      [{"pointer": "/job_id"}], code="not_a_tag_job")
    if tag_job.label_set_id != label_set.id:
        raise Invalid(f"job {tag_job_id!r} tags label set {tag_job.label_set_id!r}, not {label_set_id!r}; "
                      f"suggest for that set, or pick a tag job of this one",
                      [{"pointer": "/job_id"}], code="job_of_another_label_set")
    adapter = adapters.resolve_adapter(session, tenant_id, label_set.id, None)
    job = Job(tenant_id=tenant_id, type=JobType.SUGGEST, label_set_id=label_set.id, adapter_version=adapter.version,
              config={"job_id": tag_job.id, "n": n}, total=min(n, tag_job.total))
    session.add(job)
    session.flush()
    return job


def create_audit_job(session: Session, tenant_id: str, label_set_id: str) -> Job:
    """A queued audit of the set's examples. Invalid (`too_few_examples`, naming the minimum)
    when there are fewer than AUDIT_MIN_EXAMPLES examples or a label has fewer than
    AUDIT_MIN_PER_LABEL."""
    label_set = label_sets.label_set_row(session, tenant_id, label_set_id)
    label_sets.require_kind(label_set, LabelSetKind.CLASSIFICATION, "auditing the labels")
    total = label_sets.example_count(session, label_set.id)
    counts = label_sets.label_example_counts(session, label_set)
    short = {name: n for name, n in counts.items() if n < AUDIT_MIN_PER_LABEL}
    if total < AUDIT_MIN_EXAMPLES or short:
        parts = []
        if total < AUDIT_MIN_EXAMPLES:
            parts.append(f"at least {AUDIT_MIN_EXAMPLES} examples in all (there are {total})")
        if short:
            parts.append(f"at least {AUDIT_MIN_PER_LABEL} examples of every label ("
                         + ", ".join(f"{name!r} has {n}" for name, n in list(short.items())[:20]) + ")")
        raise Invalid("too few examples to audit: an audit trains one adapter per fold and needs "
                      + " and ".join(parts),
                      [{"minimum_examples": AUDIT_MIN_EXAMPLES, "examples": total}]
                      + [{"label": name, "examples": n, "minimum_per_label": AUDIT_MIN_PER_LABEL}
                         for name, n in short.items()], code="too_few_examples")
    label_sets.resolve_base_model(session, label_set, get_settings().english_base)
    job = Job(tenant_id=tenant_id, type=JobType.AUDIT, label_set_id=label_set.id, config=dict(label_set.config or {}),
              total=total)
    session.add(job)
    session.flush()
    return job


@dataclass(frozen=True)
class OutputPage:
    rows: list[JobOutput]
    next_cursor: str | None


def _cursor(position: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"p": position}).encode()).decode().rstrip("=")


def _position(cursor: str | None) -> int:
    if not cursor:
        return -1
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return int(value["p"])
    except (ValueError, KeyError, TypeError):
        raise Invalid("cursor is not one this API gave out", [{"pointer": "/cursor", "in": "query"}],
                      code="invalid_cursor") from None


def outputs_page(session: Session, job: Job, cursor: str | None, limit: int) -> OutputPage:
    """A page of a suggest or audit job's answer, in rank order (empty until the job succeeds)."""
    rows = list(session.scalars(select(JobOutput).where(JobOutput.job_id == job.id,
                                                        JobOutput.position > _position(cursor))
                                .order_by(JobOutput.position).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return OutputPage(rows, _cursor(rows[-1].position) if more else None)


def all_outputs(session: Session, job: Job) -> list[JobOutput]:
    return list(session.scalars(select(JobOutput).where(JobOutput.job_id == job.id).order_by(JobOutput.position)))


@dataclass(frozen=True)
class Decided:
    finding: JobOutput
    example: Example
    label_set_id: str


def decide_finding(session: Session, tenant_id: str, job_id: str, example_id: int, decision: str,
                   by_key: int | None, by_prefix: str | None) -> Decided:
    """A person's decision on an audit finding: "accepted" relabels the example with the
    suggested label(s) (the old ones go to its history); "kept" leaves it. Deciding again
    replaces the decision (accepting after keeping relabels; keeping after accepting does not
    undo the fix — relabel the example for that). Conflict when the example was relabelled
    since the audit (its labels are no longer the ones the audit contradicted)."""
    job = jobs.get_job(session, tenant_id, job_id)
    if job.type != JobType.AUDIT:
        raise Invalid(f"job {job_id!r} is a {job.type} job; only an audit job's findings take a decision",
                      [{"pointer": "/job_id", "in": "path"}], code="not_an_audit_job")
    finding = session.scalar(select(JobOutput).where(JobOutput.job_id == job.id, JobOutput.example_id == example_id))
    if finding is None:
        raise NotFound(f"example {example_id} is not among the findings of audit {job_id!r}",
                       [{"pointer": "/example_id", "in": "path"}], code="finding_not_found")
    example = session.scalar(select(Example).where(Example.id == example_id, Example.label_set_id == job.label_set_id))
    if example is None:
        raise NotFound(f"example {example_id} no longer exists", [{"pointer": "/example_id", "in": "path"}],
                       code="example_not_found")
    given = finding.body["given"]
    given_names = list(given) if isinstance(given, list) else [given]
    if decision == "accepted":
        suggested = finding.body["suggested"]
        names = list(suggested) if isinstance(suggested, list) else [suggested]
        if list(example.labels) != given_names and list(example.labels) != names:
            raise Conflict(f"example {example_id} was relabelled since the audit (it is now "
                           f"{', '.join(example.labels) or 'unlabelled'}); audit again", code="example_changed")
        label_sets.relabel(example, names, by_prefix, f"audit {job.id}: fix accepted")
    finding.decision, finding.decided_at, finding.decided_by = decision, utcnow(), by_key
    session.flush()
    return Decided(finding, example, job.label_set_id)


# --- the workers' side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SuggestWork:
    job_id: str
    attempt: int
    label_set_id: str
    tenant_id: str
    adapter_version: int
    n: int
    item_ids: list[str]  # the candidates: items not reviewed, whose text is no example yet
    texts: list[str]
    labelled: list[str]  # example texts, for diversity


@dataclass(frozen=True)
class AuditWork:
    job_id: str
    attempt: int
    label_set_id: str
    tenant_id: str
    multi_label: bool
    label_names: list[str]
    example_ids: list[int]
    texts: list[str]
    labels: list[Any]
    config: dict[str, Any]
    base_model: str


def lease_loop_job(job_id: str) -> SuggestWork | AuditWork | None:
    """Claim a suggest or audit job and read what it needs; None when there is nothing to do
    (unknown, finished, leased elsewhere, or out of attempts)."""
    now = utcnow()
    with session_scope() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None or job.type not in (JobType.SUGGEST, JobType.AUDIT) or job.status in JobStatus.finished():
            return None
        if job.status == JobStatus.RUNNING and not jobs.lease_expired(job.lease_expires_at, now):
            return None
        if not jobs.claim_single_unit(job, now, job.type):
            return None
        label_set = s.get_one(LabelSet, job.label_set_id)
        if job.type == JobType.SUGGEST:
            tag_job_id = job.config["job_id"]
            example_hashes = select(Example.text_hash).where(Example.label_set_id == label_set.id)
            reviewed = select(Result.position).where(Result.job_id == tag_job_id, Result.reviewed_at.is_not(None))
            known = set(s.scalars(example_hashes))
            items = [(i, t) for i, t in s.execute(select(JobItem.item_id, JobItem.text).where(
                JobItem.job_id == tag_job_id, JobItem.position.not_in(reviewed)).order_by(JobItem.position))
                if label_sets.text_hash(t) not in known]
            labelled = list(s.scalars(select(Example.text).where(Example.label_set_id == label_set.id)
                                      .order_by(Example.id.desc()).limit(MAX_LABELLED_FOR_DIVERSITY)))
            return SuggestWork(job.id, job.attempts, label_set.id, job.tenant_id, int(job.adapter_version or 0),
                               int(job.config["n"]), [i for i, _ in items], [t for _, t in items], labelled)
        examples = label_sets.training_examples(s, label_set)
        return AuditWork(job.id, job.attempts, label_set.id, job.tenant_id, label_set.multi_label,
                         [label.name for label in label_set.labels], examples.ids, examples.texts, examples.labels,
                         dict(job.config or {}),
                         label_set.base_model_resolved
                         or label_sets.resolve_base_model(s, label_set, get_settings().english_base))


def complete_loop_job(job_id: str, attempt: int, rows: Sequence[dict[str, Any]], metrics: dict[str, Any]) -> bool:
    """Write a suggest or audit job's answer and finish it, in one transaction. False (nothing
    written) when the job is no longer this attempt's: cancelled, finished, taken over."""
    with session_scope() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None or job.status != JobStatus.RUNNING or job.attempts != attempt:
            return False
        if rows:
            s.execute(insert(JobOutput), [
                {"job_id": job.id, "position": i, "body": row, "example_id": row.get("example_id")}
                for i, row in enumerate(rows)])
        job.total = job.done = len(rows)
        job.metrics = metrics
        jobs.finish(job, JobStatus.SUCCEEDED, utcnow())
    return True
