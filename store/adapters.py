"""Adapter versions of a label set: their rows (safetensors bytes + config JSON + checksum),
which one is active, promotion and rollback, and the lookups that decide which version serves
a request. A row exists only once its bytes are complete; `checksum` is verified on load."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, defer

from . import label_sets
from .db import session_scope
from .errors import Conflict, NotFound
from .models import Adapter, LabelSet


class AdapterNotFound(NotFound):
    """The label set has no such adapter version (or no active one), or is not the tenant's."""


def adapter_checksum(weights: bytes, config_json: str) -> str:
    return hashlib.sha256(weights + config_json.encode()).hexdigest()


def find_adapter(session: Session, label_set_id: str, version: int | None) -> Adapter | None:
    """Version `version` of the set, or its active adapter (None: no such row). Bytes deferred."""
    query = select(Adapter).options(defer(Adapter.weights)).where(Adapter.label_set_id == label_set_id)
    return session.scalar(query.where(Adapter.version == version) if version is not None
                          else query.where(Adapter.is_active.is_(True)))


def active_adapter(session: Session, label_set_id: str) -> Adapter | None:
    return find_adapter(session, label_set_id, None)


def active_adapters(session: Session, label_set_ids: Sequence[str]) -> dict[str, Adapter]:
    """The active adapter of each of these label sets that has one."""
    return {a.label_set_id: a for a in session.scalars(
        select(Adapter).options(defer(Adapter.weights))
        .where(Adapter.label_set_id.in_(list(label_set_ids)), Adapter.is_active.is_(True)))}


def list_adapters(session: Session, tenant_id: str, label_set_id: str) -> list[Adapter]:
    label_set = label_sets.label_set_row(session, tenant_id, label_set_id)
    return list(session.scalars(
        select(Adapter).options(defer(Adapter.weights)).where(Adapter.label_set_id == label_set.id)
        .order_by(Adapter.version)
    ))


def get_adapter(session: Session, tenant_id: str, label_set_id: str, version: int) -> Adapter:
    label_set = label_sets.label_set_row(session, tenant_id, label_set_id)
    adapter = find_adapter(session, label_set.id, version)
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
    """The adapter a tag or predict request would use: the pinned version, else the active one
    (Conflict when there is none: the request is fine, the set is not ready)."""
    label_set = label_sets.label_set_row(session, tenant_id, label_set_id)
    adapter = find_adapter(session, label_set.id, version)
    if adapter is None and version is None:
        raise Conflict(f"label set {label_set_id!r} has no trained adapter yet; "
                       f"POST /v1/label-sets/{label_set_id}/train first", code="no_adapter")
    if adapter is None:
        raise Conflict(f"label set {label_set_id!r} has no adapter version {version}",
                       [{"pointer": "/adapter_version"}], code="no_adapter")
    return adapter


# --- a new version --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredAdapter:
    version: int
    is_active: bool
    note: str | None


@dataclass(frozen=True)
class Promotion:
    """Whether a new version replaces the active one, and why: the worker scored both on the
    same rows (`rule`: held_out, the set's evaluation examples; k-fold, each version's recipe
    retrained per fold on the current examples; first, nothing to compare with)."""

    promote: bool
    rule: str
    metric: str
    new_score: float | None
    active_version: int | None
    active_score: float | None
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"promoted": self.promote, "rule": self.rule, "metric": self.metric, "new_score": self.new_score,
                "active_version": self.active_version, "active_score": self.active_score, "reason": self.reason,
                **self.detail}


def first_version(metric: str, new_score: float | None) -> Promotion:
    return Promotion(True, "first", metric, new_score, None, None, "the first version of the set is active")


def add_version(session: Session, label_set: LabelSet, train_job_id: str, weights: bytes, config_json: str,
                metrics: dict[str, Any], param_count: int, promotion: Promotion) -> tuple[Adapter, Promotion]:
    """Write the label set's next version, active as `promotion` decided — unless the active
    version is no longer the one it was compared with (another version was activated or
    promoted meanwhile): then it stays inactive, and the returned promotion says so. The caller
    holds the label set's row lock, so two versions finishing at once take turns."""
    version = (session.scalar(select(func.max(Adapter.version)).where(Adapter.label_set_id == label_set.id)) or 0) + 1
    active = session.scalar(select(Adapter).where(Adapter.label_set_id == label_set.id, Adapter.is_active.is_(True)))
    now_active = active.version if active is not None else None
    if now_active != promotion.active_version:
        promotion = replace(promotion, promote=False, reason=(
            f"not activated: it was compared with version {promotion.active_version}, but version {now_active} "
            "became active while it trained; activate it by hand to use it"),
            detail={**promotion.detail, "active_changed_to": now_active})
    if promotion.promote and active is not None:
        active.is_active = False
        session.flush()  # the old active row is inactive before the new one is written
    adapter = Adapter(
        label_set_id=label_set.id, version=version, is_active=promotion.promote, weights=weights,
        config_json=config_json, checksum=adapter_checksum(weights, config_json), metrics=metrics,
        param_count=param_count, size_bytes=len(weights) + len(config_json.encode()), train_job_id=train_job_id,
        note=None if promotion.promote else promotion.reason,
    )
    session.add(adapter)
    return adapter, promotion


# --- serving: what a worker loads ------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterRef:
    label_set_id: str
    version: int
    checksum: str


def trained_base(config_json: str) -> str | None:
    """The base model an adapter's saved config names (reft_core's AdapterConfig.base_model);
    None for a config without it."""
    try:
        return str(json.loads(config_json)["base_model"]["name"])
    except (ValueError, KeyError, TypeError):
        return None


def adapter_ref(label_set_id: str, version: int | None = None, tenant_id: str | None = None) -> AdapterRef:
    """Which adapter serves a request: `version`, or the active one. Scoped to `tenant_id` when
    given. Raises AdapterNotFound."""
    with session_scope(readonly=True) as s:
        owned = tenant_id is None or s.scalar(
            select(LabelSet.id).where(LabelSet.id == label_set_id, LabelSet.tenant_id == tenant_id)) is not None
        adapter = find_adapter(s, label_set_id, version) if owned else None
        if adapter is None:
            what = f"version {version}" if version is not None else "an active adapter"
            raise AdapterNotFound(f"label set {label_set_id} has no {what}")
        return AdapterRef(label_set_id, adapter.version, adapter.checksum)


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
