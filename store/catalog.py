"""The queries the API needs: tenants and keys, label sets and their examples, job creation,
and the reads behind every GET. Every function takes a `Session` and leaves the transaction to
the caller, so that a request's writes commit (or roll back) as one. Everything a tenant owns
is looked up through `tenant_id`: another tenant's id is simply not found.

Rule violations raise `CatalogError` subclasses that carry a stable `code`, a message a person
can act on, and `details` (JSON pointers into the request where there is one); the API turns
them into its error format.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice, takewhile
from typing import Any, Iterable, Sequence

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from .models import Adapter, ApiKey, Chunk, Example, Job, JobItem, Label, LabelSet, Result, Tenant, utcnow

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")
KEY_PREFIX = "rt_"
MAX_DETAILS = 100  # problems listed in one error; the message gives the full count


# --- errors -----------------------------------------------------------------------------------


class CatalogError(Exception):
    code = "error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []
        if code:
            self.code = code


class NotFound(CatalogError):
    code = "not_found"


class Conflict(CatalogError):
    code = "conflict"


class Invalid(CatalogError):
    code = "invalid"


# --- tenants and API keys ---------------------------------------------------------------------


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def key_prefix(raw_key: str) -> str:
    # Enough to tell keys apart, never enough to matter: at most a third of a short key.
    return raw_key[: min(12, len(raw_key) // 3)]


def create_tenant(session: Session, name: str) -> Tenant:
    if tenant_by_name(session, name) is not None:
        raise Conflict(f"tenant {name!r} already exists", code="tenant_exists")
    tenant = Tenant(name=name)
    session.add(tenant)
    session.flush()
    return tenant


def tenant_by_name(session: Session, name: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.name == name))


def ensure_tenant(session: Session, name: str) -> Tenant:
    return tenant_by_name(session, name) or create_tenant(session, name)


def create_api_key(session: Session, tenant_id: str, name: str = "", raw_key: str | None = None) -> tuple[ApiKey, str]:
    """Store a new key (hashed) and return it with the raw key, which is never stored."""
    raw_key = raw_key or KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(tenant_id=tenant_id, key_hash=hash_key(raw_key), prefix=key_prefix(raw_key), name=name)
    session.add(key)
    session.flush()
    return key, raw_key


def api_key_by_raw(session: Session, raw_key: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(raw_key)))


def live_key_count(session: Session, tenant_id: str) -> int:
    return session.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None))
    )


def ensure_api_key(session: Session, tenant_id: str, raw_key: str, name: str = "") -> tuple[ApiKey, bool]:
    """Make `raw_key` a live key of the tenant (how REFTAG_API_KEY bootstraps a deployment).
    Returns (key, created). A key that belongs to another tenant is a Conflict."""
    key = api_key_by_raw(session, raw_key)
    if key is None:
        return create_api_key(session, tenant_id, name, raw_key)[0], True
    if key.tenant_id != tenant_id:
        raise Conflict("that key already belongs to another tenant", code="key_taken")
    key.revoked_at = None
    return key, False


def revoke_api_key(session: Session, prefix: str) -> ApiKey:
    keys = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))).all()
    if not keys:
        raise NotFound(f"no live API key has the prefix {prefix!r}")
    if len(keys) > 1:
        raise Conflict(f"{len(keys)} live keys share the prefix {prefix!r}", code="ambiguous_prefix")
    keys[0].revoked_at = utcnow()
    return keys[0]


def tenant_id_for_key(session: Session, raw_key: str) -> str | None:
    """The id of the tenant a live key belongs to, or None (unknown or revoked key). Runs on
    every request, so it reads one indexed row and no ORM entity."""
    digest = hash_key(raw_key)
    row = session.execute(
        select(ApiKey.tenant_id, ApiKey.key_hash, ApiKey.revoked_at).where(ApiKey.key_hash == digest)
    ).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return row.tenant_id


def tenant_for_key_hash(session: Session, digest: str) -> Tenant | None:
    """The tenant of the live key whose SHA-256 is `digest`, or None. The dashboard keeps this
    hash in its session cookie, never the key itself."""
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.key_hash, digest):
        return None
    return session.get(Tenant, key.tenant_id)


# --- label sets -------------------------------------------------------------------------------


@dataclass
class LabelSetView:
    """A label set with what its API form needs beside the row."""

    label_set: LabelSet
    example_count: int
    active_adapter: Adapter | None


def create_label_set(
    session: Session,
    tenant_id: str,
    name: str,
    labels: Sequence[tuple[str, str | None]],
    multi_label: bool = False,
    config: dict[str, Any] | None = None,
) -> LabelSetView:
    """`labels` are (name, description) pairs, in score-vector order; the API has checked that
    there are at least two and that names are distinct."""
    if session.scalar(select(LabelSet.id).where(LabelSet.tenant_id == tenant_id, LabelSet.name == name)):
        raise Conflict(f"a label set named {name!r} already exists", [{"pointer": "/name"}], code="label_set_exists")
    label_set = LabelSet(tenant_id=tenant_id, name=name, multi_label=multi_label, config=config or {})
    label_set.labels = [Label(name=n, description=d, position=i) for i, (n, d) in enumerate(labels)]
    session.add(label_set)
    try:
        session.flush()
    except IntegrityError:  # a concurrent request created the same name first
        raise Conflict(f"a label set named {name!r} already exists", [{"pointer": "/name"}],
                       code="label_set_exists") from None
    return LabelSetView(label_set, 0, None)


def label_set_row(session: Session, tenant_id: str, label_set_id: str, lock: bool = False) -> LabelSet:
    """The tenant's label set or NotFound; `lock` holds its row until commit (PostgreSQL; SQLite
    transactions here are serialized anyway) so that checks made under it stay true."""
    query = select(LabelSet).where(LabelSet.id == label_set_id, LabelSet.tenant_id == tenant_id)
    label_set = session.scalar(query.with_for_update() if lock else query)
    if label_set is None:
        raise NotFound(f"label set {label_set_id!r} not found")
    return label_set


def get_label_set(session: Session, tenant_id: str, label_set_id: str) -> LabelSetView:
    label_set = label_set_row(session, tenant_id, label_set_id)
    count = session.scalar(select(func.count()).select_from(Example).where(Example.label_set_id == label_set.id))
    return LabelSetView(label_set, count, active_adapter(session, label_set.id))


def list_label_sets(session: Session, tenant_id: str) -> list[LabelSetView]:
    label_sets = session.scalars(
        select(LabelSet).where(LabelSet.tenant_id == tenant_id).order_by(LabelSet.created_at, LabelSet.id)
    ).all()
    ids = [ls.id for ls in label_sets]
    counts = dict(
        session.execute(
            select(Example.label_set_id, func.count()).where(Example.label_set_id.in_(ids)).group_by(Example.label_set_id)
        ).all()
    )
    actives = {
        a.label_set_id: a
        for a in session.scalars(
            select(Adapter).options(defer(Adapter.weights)).where(Adapter.label_set_id.in_(ids), Adapter.is_active)
        )
    }
    return [LabelSetView(ls, counts.get(ls.id, 0), actives.get(ls.id)) for ls in label_sets]


# --- examples ---------------------------------------------------------------------------------


@dataclass
class ExamplesAdded:
    added: int
    duplicates: int
    rejected: list[dict[str, Any]] = field(default_factory=list)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def add_examples(
    session: Session, tenant_id: str, label_set_id: str, examples: Sequence[tuple[str, list[str]]]
) -> ExamplesAdded:
    """Add (text, label names) pairs. A text already in the set (or earlier in the same request)
    counts as a duplicate and keeps its first labels. Any row naming an unknown label — or more
    than one label in a single-label set — rejects the whole request, every bad row listed."""
    label_set = label_set_row(session, tenant_id, label_set_id)
    known = {label.name for label in label_set.labels}
    problems: list[dict[str, Any]] = []
    for index, (_text, names) in enumerate(examples):
        if not label_set.multi_label and len(names) != 1:
            problems.append({"pointer": f"/examples/{index}/label",
                             "message": f"a single-label set needs exactly one label, got {len(names)}"})
        for j, name in enumerate(names):
            if name not in known:
                pointer = f"/examples/{index}/labels/{j}" if label_set.multi_label else f"/examples/{index}/label"
                problems.append({"pointer": pointer, "message": f"unknown label {name!r}", "label": name})
    if problems:
        unknown = sorted({p["label"] for p in problems if "label" in p})
        named = f"; unknown labels: {', '.join(map(repr, unknown[:20]))}" if unknown else ""
        listed = f", the first {MAX_DETAILS} listed" if len(problems) > MAX_DETAILS else ""
        raise Invalid(f"{len(problems)} problem(s) in the examples{listed}, nothing was stored{named} "
                      f"(the set's labels: {', '.join(label.name for label in label_set.labels[:50])})",
                      problems[:MAX_DETAILS], code="invalid_examples")

    by_hash: dict[str, tuple[str, list[str]]] = {}
    for text, names in examples:
        by_hash.setdefault(text_hash(text), (text, list(dict.fromkeys(names))))
    existing: set[str] = set()
    hashes = list(by_hash)
    for start in range(0, len(hashes), 500):
        existing.update(session.scalars(select(Example.text_hash).where(
            Example.label_set_id == label_set.id, Example.text_hash.in_(hashes[start:start + 500]))))
    rows = [{"label_set_id": label_set.id, "text": text, "text_hash": h, "labels": names, "created_at": utcnow()}
            for h, (text, names) in by_hash.items() if h not in existing]
    if rows:
        try:
            session.execute(insert(Example), rows)
        except IntegrityError:  # a concurrent upload stored some of the same texts first
            raise Conflict("another upload to this label set stored some of these texts at the same time; "
                           "send the request again (texts already stored count as duplicates)",
                           code="concurrent_upload") from None
    return ExamplesAdded(added=len(rows), duplicates=len(examples) - len(rows))


def relabel_example(session: Session, tenant_id: str, label_set_id: str, text: str, labels: Sequence[str]) -> bool:
    """Give the stored example of `text` these labels (a person corrected them; the names were
    checked by add_examples). True when they changed."""
    label_set = label_set_row(session, tenant_id, label_set_id)
    example = session.scalar(select(Example).where(Example.label_set_id == label_set.id,
                                                   Example.text_hash == text_hash(text)))
    names = list(dict.fromkeys(labels))
    if example is None or example.labels == names:
        return False
    example.labels = names
    return True


def label_example_counts(session: Session, label_set: LabelSet) -> dict[str, int]:
    """How many examples carry each label (every label of the set, zero included)."""
    counts: Counter[str] = Counter()
    for names in session.scalars(select(Example.labels).where(Example.label_set_id == label_set.id)):
        counts.update(names)
    return {label.name: counts.get(label.name, 0) for label in label_set.labels}


# --- adapters ---------------------------------------------------------------------------------


def active_adapter(session: Session, label_set_id: str) -> Adapter | None:
    return session.scalar(
        select(Adapter).options(defer(Adapter.weights)).where(Adapter.label_set_id == label_set_id, Adapter.is_active)
    )


def list_adapters(session: Session, tenant_id: str, label_set_id: str) -> list[Adapter]:
    label_set = label_set_row(session, tenant_id, label_set_id)
    return list(session.scalars(
        select(Adapter).options(defer(Adapter.weights)).where(Adapter.label_set_id == label_set.id)
        .order_by(Adapter.version)
    ))


def get_adapter(session: Session, tenant_id: str, label_set_id: str, version: int) -> Adapter:
    label_set = label_set_row(session, tenant_id, label_set_id)
    adapter = session.scalar(select(Adapter).options(defer(Adapter.weights))
                             .where(Adapter.label_set_id == label_set.id, Adapter.version == version))
    if adapter is None:
        raise NotFound(f"label set {label_set_id!r} has no adapter version {version}")
    return adapter


def activate_adapter(session: Session, tenant_id: str, label_set_id: str, version: int) -> Adapter:
    """Make `version` the active adapter of the set (promote or roll back)."""
    adapter = get_adapter(session, tenant_id, label_set_id, version)
    session.execute(update(Adapter).where(Adapter.label_set_id == adapter.label_set_id, Adapter.id != adapter.id)
                    .values(is_active=False))
    adapter.is_active = True
    session.flush()
    return adapter


def resolve_adapter(session: Session, tenant_id: str, label_set_id: str, version: int | None) -> Adapter:
    """The adapter a tag or predict request would use: the pinned version, else the active one."""
    label_set = label_set_row(session, tenant_id, label_set_id)
    if version is None:
        adapter = active_adapter(session, label_set.id)
        if adapter is None:
            raise Conflict(f"label set {label_set_id!r} has no trained adapter yet; "
                           f"POST /v1/label-sets/{label_set_id}/train first", code="no_adapter")
        return adapter
    adapter = session.scalar(select(Adapter).options(defer(Adapter.weights))
                             .where(Adapter.label_set_id == label_set.id, Adapter.version == version))
    if adapter is None:
        raise Conflict(f"label set {label_set_id!r} has no adapter version {version}",
                       [{"pointer": "/adapter_version"}], code="no_adapter")
    return adapter


# --- jobs -------------------------------------------------------------------------------------


def create_train_job(
    session: Session, tenant_id: str, label_set_id: str, config: dict[str, Any], min_examples_per_label: int
) -> Job:
    """A queued train job. Its `config` is the label set's overrides with the request's on top,
    so the worker reads one dict. Refuses while another train job of the set is unfinished,
    and when any label has fewer than `min_examples_per_label` examples."""
    label_set = label_set_row(session, tenant_id, label_set_id, lock=True)
    busy = session.scalar(select(Job.id).where(
        Job.label_set_id == label_set.id, Job.type == "train", Job.status.in_(ACTIVE_STATUSES)))
    if busy:
        raise Conflict(f"label set {label_set_id!r} is already training (job {busy}); wait for it or cancel it",
                       [{"job_id": busy}], code="training_in_progress")
    counts = label_example_counts(session, label_set)
    short = {name: n for name, n in counts.items() if n < min_examples_per_label}
    if short:
        listing = ", ".join(f"{name!r} has {n}" for name, n in short.items())
        raise Invalid(f"too few examples to train: {min_examples_per_label} per label are needed; {listing}",
                      [{"label": name, "examples": n, "needed": min_examples_per_label} for name, n in short.items()],
                      code="too_few_examples")
    examples = session.scalar(select(func.count()).select_from(Example).where(Example.label_set_id == label_set.id))
    job = Job(tenant_id=tenant_id, type="train", label_set_id=label_set.id,
              config={**(label_set.config or {}), **config}, total=examples)
    session.add(job)
    session.flush()
    return job


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
) -> tuple[Job, bool]:
    """Create a tag job with its items (item_id, text, meta) and chunks of `chunk_size`.
    Returns (job, created): with an `idempotency_key` already used for the same request the
    earlier job comes back with created=False; for another request, Conflict."""
    if idempotency_key is not None:
        earlier = _job_for_key(session, tenant_id, idempotency_key, request_hash or "")
        if earlier is not None:
            return earlier, False
    adapter = resolve_adapter(session, tenant_id, label_set_id, adapter_version)
    job = Job(tenant_id=tenant_id, type="tag", label_set_id=label_set_id, adapter_version=adapter.version,
              idempotency_key=idempotency_key, request_hash=request_hash, total=len(items))
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
    session.execute(delete(Job).where(Job.id == job_id))


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
    if job.status in TERMINAL_STATUSES:
        raise Conflict(f"job {job_id!r} has already {job.status}", code="job_finished")
    job.status = "cancelled"
    job.finished_at = utcnow()
    job.lease_expires_at = None
    session.flush()
    return job


# --- results ----------------------------------------------------------------------------------


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
    job = get_job(session, tenant_id, job_id)
    finished = job.status in TERMINAL_STATUSES  # read before the rows: a result written later is not missed
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


def iter_results(session_scope: Any, tenant_id: str, job_id: str, batch: int = 1000) -> Iterable[Result]:
    """Every result written so far, reading `batch` rows per short transaction (for streaming)."""
    cursor = None
    while True:
        with session_scope() as session:
            page = results_page(session, tenant_id, job_id, cursor, batch)
        yield from page.results
        if page.next_cursor is None or not page.results:
            return
        cursor = page.next_cursor


def iter_results_with_texts(session_scope: Any, tenant_id: str, job_id: str,
                            batch: int = 1000) -> Iterable[tuple[Result, str]]:
    """iter_results, each result with the text of its item (for exports that carry the text)."""
    results = iter(iter_results(session_scope, tenant_id, job_id, batch))
    while page := list(islice(results, batch)):
        with session_scope() as session:
            texts = dict(session.execute(select(JobItem.position, JobItem.text).where(
                JobItem.job_id == job_id, JobItem.position.between(page[0].position, page[-1].position))).all())
        yield from ((r, texts[r.position]) for r in page)
