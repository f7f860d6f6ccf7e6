"""The schema, declared once. Alembic migrations are generated from these models.

Ids that users see are prefixed strings (`ls_…`, `job_…`); rows that only the service sees
use integer keys. Everything a tenant owns carries `tenant_id` (directly or through its
label set) so that every query can be scoped to the key that asked.
"""
from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, overload

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from reft_core.spans import DEFAULT_REVIEW_THRESHOLD as DEFAULT_SPAN_REVIEW_THRESHOLD


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every datetime reftag stores is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


class JobType(StrEnum):
    TRAIN = "train"
    TAG = "tag"
    # The labeling loop's jobs (store.loop): which items of a tag job to label next, and which
    # examples look mislabelled. Like a train job, each is one unit of work on the train queue.
    SUGGEST = "suggest"
    AUDIT = "audit"

    @classmethod
    def single_unit(cls) -> tuple[JobType, ...]:
        """Jobs one worker does whole, under one lease (tag jobs are chunks)."""
        return (cls.TRAIN, cls.SUGGEST, cls.AUDIT)


class JobStatus(StrEnum):
    """A job's life: queued → running → one of the finished states."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def unfinished(cls) -> tuple[JobStatus, ...]:
        return (cls.QUEUED, cls.RUNNING)

    @classmethod
    def finished(cls) -> tuple[JobStatus, ...]:
        return (cls.SUCCEEDED, cls.FAILED, cls.CANCELLED)


class ChunkStatus(StrEnum):
    """A chunk of a tag job: pending (waiting for a worker) → running (leased) → done or failed."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @classmethod
    def finished(cls) -> tuple[ChunkStatus, ...]:
        return (cls.DONE, cls.FAILED)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("tn"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key. Only its SHA-256 is stored; `prefix` lets a person tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class DashboardSession(Base):
    """A dashboard sign-in with an API key. The session cookie carries a random token; only its
    SHA-256 is stored here, so a copy of the database (with the cookie-signing secret) makes no
    cookie that signs in. Signing out deletes the row; revoking the key ends its sessions."""

    __tablename__ = "dashboard_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LabelSetKind(StrEnum):
    """What a label set's labels label: whole texts (one label, or several when `multi_label`),
    or spans of characters inside them (entity types: people, products, amounts)."""

    CLASSIFICATION = "classification"
    SPANS = "spans"


class LabelSet(Base):
    __tablename__ = "label_sets"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("ls"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    multi_label: Mapped[bool] = mapped_column(Boolean, default=False)
    kind: Mapped[str] = mapped_column(String(16), default=LabelSetKind.CLASSIFICATION)  # a LabelSetKind
    # Spans sets: a result needs review when some token's decoded tag (a span's, or "no span") is
    # less likely than this (reft_core.span_decoding). Classification sets use review_precision.
    span_review_threshold: Mapped[float] = mapped_column(Float, default=DEFAULT_SPAN_REVIEW_THRESHOLD)
    # The base model its adapters are trained on: "auto" (chosen from the examples at the first
    # training, reft_core.bases.choose_base) or a base's name. `base_model_resolved` is the one
    # in use, set when a train job is created.
    base_model: Mapped[str] = mapped_column(String(200), default="auto")
    base_model_resolved: Mapped[str | None] = mapped_column(String(200), default=None)
    # Training-config overrides for every adapter of this set (merged under a train request's).
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Retrain on its own: this many examples added or relabelled since the set's latest training
    # started queue a train job (store.jobs.retrain_if_due). None: only when asked.
    retrain_after: Mapped[int | None] = mapped_column(Integer, default=50)
    # Auto-accept: results whose calibrated confidence is at or above the threshold training
    # found for this precision are accepted; the rest need review. None: the margin rule.
    review_precision: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    labels: Mapped[list[Label]] = relationship(
        back_populates="label_set", order_by="Label.position", cascade="all, delete-orphan"
    )


class Label(Base):
    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("label_set_id", "name"), UniqueConstraint("label_set_id", "position"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label_set_id: Mapped[str] = mapped_column(ForeignKey("label_sets.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    position: Mapped[int] = mapped_column(Integer)

    label_set: Mapped[LabelSet] = relationship(back_populates="labels")


class Example(Base):
    """A human-labelled text. `labels` is a list of label names (one for single-label sets; for a
    spans set, the types its spans carry, in the set's order, so that counts per label read alike).
    `spans` (spans sets only) is the text's spans, `[{"start", "end", "label"}]`, character offsets,
    end exclusive, in order; `[]` is a text with no span.
    `evaluation` is given once, when the example is added (`label_sets.evaluation_marks`): an
    evaluation example is never trained on once the set is large enough for held-out
    evaluation, and every adapter version is scored on the same ones."""

    __tablename__ = "examples"
    __table_args__ = (UniqueConstraint("label_set_id", "text_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label_set_id: Mapped[str] = mapped_column(ForeignKey("label_sets.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64))
    labels: Mapped[list[Any]] = mapped_column()
    spans: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    evaluation: Mapped[bool] = mapped_column(Boolean, default=False)
    # Where a reviewed result made it: the tag job and item a person accepted or corrected.
    source_job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), default=None)
    source_item_id: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Added or last relabelled (any change through the ORM): what `retrain_after` counts.
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Labels this example had before, oldest first: [{"labels", "until", "by", "why"}] (an audit's
    # fix accepted, store.loop.decide_finding).
    history: Mapped[list[Any]] = mapped_column(default=list)


class Adapter(Base):
    """A trained adapter: its safetensors bytes and config live here, so any worker that
    reaches the database can serve it. A row exists only once its bytes are complete;
    `checksum` is the SHA-256 of `weights` + `config_json`, verified on load."""

    __tablename__ = "adapters"
    __table_args__ = (UniqueConstraint("label_set_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label_set_id: Mapped[str] = mapped_column(ForeignKey("label_sets.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    weights: Mapped[bytes] = mapped_column(LargeBinary)
    config_json: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    param_count: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    # One train job makes at most one adapter, however often it is retried.
    train_job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), unique=True)
    # Why a new version was not made active (e.g. worse than the active one on held-out data).
    note: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A train or tag job. Progress (`done`, `failed`) is counted by the database in the same
    transaction that writes results, never remembered by a worker."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("job"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(8))  # a JobType
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    label_set_id: Mapped[str] = mapped_column(ForeignKey("label_sets.id", ondelete="CASCADE"), index=True)
    # Tag: the version pinned by the request, else the active one at submission.
    # Train: the version produced, once it exists.
    adapter_version: Mapped[int | None] = mapped_column(Integer, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Train progress as the trainer reports it: step, epoch, loss, eta_seconds, loss history.
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Train jobs: what the request should know but did not stop it (e.g. labels with very few examples).
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    # Train jobs: the running train job of the set that this one waits for (a request made while it
    # ran); no worker starts this one before that one has finished (`store.jobs`, "waiting").
    queued_after: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), default=None)
    # Tag jobs: the label set's review_precision when the job was submitted.
    review_precision: Mapped[float | None] = mapped_column(Float, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class JobItem(Base):
    """One submitted text of a tag job, in submission order (`position`), and the chunk that
    tags it."""

    __tablename__ = "job_items"
    __table_args__ = (UniqueConstraint("job_id", "item_id"), Index("ix_job_items_chunk", "job_id", "chunk"))

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    chunk: Mapped[int] = mapped_column(Integer, default=0)


class Chunk(Base):
    """`size` items of a tag job (those whose `JobItem.chunk` is `index`): the unit of work a
    `tag_chunk` task does. Items are grouped by length, not by position, so that a chunk's
    batches carry few pads (see `store.jobs.chunk_of_items`)."""

    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunks_status_lease", "status", "lease_expires_at"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=ChunkStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class Result(Base):
    """One result per (job, item). The primary key makes a chunk that runs twice write once.
    `confidence` (the calibrated chance the labels are right) and `margin` (how far the result
    is from another answer) order the review queue; `reviewed_*` is a person's answer."""

    __tablename__ = "results"
    __table_args__ = (Index("ix_results_review", "job_id", "needs_review", "confidence"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(200))
    labels: Mapped[list[Any]] = mapped_column(default=list)
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Spans sets: the spans found, [{"start", "end", "label", "text", "score"}]; `labels` then
    # holds their distinct types. None for classification results.
    spans: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False)
    adapter_version: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    confidence: Mapped[float | None] = mapped_column(Float, default=None)
    margin: Mapped[float | None] = mapped_column(Float, default=None)
    reviewed_labels: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    reviewed_at: Mapped[datetime | None] = mapped_column(default=None)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"), default=None)


class JobOutput(Base):
    """One row of a suggest or audit job's answer, in rank order (`position`), written in the
    transaction that finishes the job. Suggest: {"item_id", "text", "score", "reason", "labels"};
    audit: {"example_id", "text", "given", "suggested", "confidence", "given_score"}. An audit
    finding carries what a person decided about it: "accepted" (the example was relabelled) or
    "kept"."""

    __tablename__ = "job_outputs"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column()
    # Audit findings: the example, for looking a finding up by it.
    example_id: Mapped[int | None] = mapped_column(Integer, default=None)
    decision: Mapped[str | None] = mapped_column(String(16), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"), default=None)


class LabelStudioConnection(Base):
    """A label set's Label Studio project, whose annotations reftag reads before training
    (`store.label_studio`). The API token is sealed with the deployment's secret key
    (`service.secret_box`) and never shown again."""

    __tablename__ = "label_studio_connections"

    label_set_id: Mapped[str] = mapped_column(ForeignKey("label_sets.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    project_id: Mapped[int] = mapped_column(Integer)
    sealed_token: Mapped[bytes] = mapped_column(LargeBinary)
    # What the latest pull did: {"at", "added", "relabelled", "removed", ...} or {"at", "error"}.
    last_pull: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LabelStudioTask(Base):
    """The example a Label Studio task's annotation became (by the webhook or a pull): sent
    again it changes nothing, an updated annotation relabels the example, and a task whose
    annotation is gone removes it — when the annotation made it (`owns_example`), not when the
    text was already an example from elsewhere."""

    __tablename__ = "label_studio_tasks"

    label_set_id: Mapped[str] = mapped_column(ForeignKey("label_sets.id", ondelete="CASCADE"), primary_key=True)
    task_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    annotation_id: Mapped[int | None] = mapped_column(Integer, default=None)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"), index=True)
    owns_example: Mapped[bool] = mapped_column(Boolean, default=True)


class MetricCounter(Base):
    """A number /metrics reports, kept up to date in the transaction that changes what it counts
    (`store.job_counts`), so that a scrape reads these few rows instead of every job. `name` is
    the metric, `label` its label value ("tag:running", "ok", a histogram bucket's bound)."""

    __tablename__ = "metric_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0)
