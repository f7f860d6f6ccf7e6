"""Tenants, their API keys, and the dashboard sessions signed in with a key. A key (and a
session token) is stored as its SHA-256 only; `prefix` lets a person tell keys apart. Every
function takes a `Session` and leaves the transaction to the caller."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from .errors import Conflict, NotFound
from .models import ApiKey, DashboardSession, Tenant, as_utc, utcnow

KEY_PREFIX = "rt_"


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
    ) or 0


def ensure_api_key(session: Session, tenant_id: str, raw_key: str, name: str = "") -> tuple[ApiKey, bool]:
    """Make `raw_key` a key of the tenant (how REFTAG_API_KEY bootstraps a deployment). Returns
    (key, created). A key that belongs to another tenant is a Conflict, and so is a revoked key:
    revoking is for good, and a key still named in a deployment's environment must not come back
    to life at its next start."""
    key = api_key_by_raw(session, raw_key)
    if key is None:
        return create_api_key(session, tenant_id, name, raw_key)[0], True
    if key.tenant_id != tenant_id:
        raise Conflict("that key already belongs to another tenant", code="key_taken")
    if key.revoked_at is not None:
        raise Conflict(f"that key (prefix {key.prefix}) was revoked at {as_utc(key.revoked_at):%Y-%m-%d %H:%M} UTC "
                       "and stays revoked", code="key_revoked")
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
    """The id of the tenant a live key belongs to, or None (unknown or revoked key)."""
    found = live_key(session, raw_key)
    return None if found is None else found[0]


def live_key(session: Session, raw_key: str) -> tuple[str, int] | None:
    """(tenant id, key id) of a live key, or None (unknown or revoked key). Runs on every
    request, so it reads one indexed row and no ORM entity."""
    digest = hash_key(raw_key)
    row = session.execute(
        select(ApiKey.tenant_id, ApiKey.id, ApiKey.key_hash, ApiKey.revoked_at).where(ApiKey.key_hash == digest)
    ).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return str(row.tenant_id), int(row.id)


# --- dashboard sessions ---------------------------------------------------------------------------


def start_dashboard_session(session: Session, raw_key: str, lifetime: timedelta) -> tuple[Tenant, str] | None:
    """Sign in to the dashboard with a live key: the tenant and a new session token (for the
    cookie; only its hash is stored), or None for an unknown or revoked key. Expired sessions
    are deleted here, so that sessions nobody signed out of do not pile up."""
    now = utcnow()
    digest = hash_key(raw_key)
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.key_hash, digest):
        return None
    session.execute(delete(DashboardSession).where(DashboardSession.expires_at < now))
    token = secrets.token_urlsafe(32)
    session.add(DashboardSession(token_hash=hash_key(token), api_key_id=key.id, created_at=now,
                                 expires_at=now + lifetime))
    session.flush()
    return session.get_one(Tenant, key.tenant_id), token


def tenant_for_dashboard_session(session: Session, token: str) -> tuple[Tenant, int] | None:
    """The tenant of a dashboard session that has not ended or expired and whose key is live,
    with that key's id (what the person signed in with: reviews record it)."""
    if not token:
        return None
    row = session.execute(
        select(Tenant, ApiKey.id)
        .join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .join(DashboardSession, DashboardSession.api_key_id == ApiKey.id)
        .where(DashboardSession.token_hash == hash_key(token), DashboardSession.expires_at > utcnow(),
               ApiKey.revoked_at.is_(None))
    ).first()
    return None if row is None else (row[0], int(row[1]))


def end_dashboard_session(session: Session, token: str) -> None:
    """Sign out: the session's cookie signs in no more, wherever a copy of it is."""
    if token:
        session.execute(delete(DashboardSession).where(DashboardSession.token_hash == hash_key(token)))
