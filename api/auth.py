"""`Authorization: Bearer <key>` → the tenant that owns the key (in `g.tenant_id`)."""
from __future__ import annotations

from flask import g, request

from store import tenants

from .db import read_transaction
from .errors import ApiError


def require_tenant() -> None:
    """before_request of the /v1 blueprint: a live key or 401."""
    scheme, _, raw_key = request.headers.get("Authorization", "").partition(" ")
    raw_key = raw_key.strip()
    if scheme.lower() != "bearer" or not raw_key:
        raise ApiError(401, "unauthorized", "send `Authorization: Bearer <api key>`",
                       headers={"WWW-Authenticate": 'Bearer realm="reftag"'})
    with read_transaction() as session:
        found = tenants.live_key(session, raw_key)
    if found is None:
        raise ApiError(401, "unauthorized", "API key is unknown or revoked",
                       headers={"WWW-Authenticate": 'Bearer realm="reftag", error="invalid_token"'})
    g.tenant_id, g.api_key_id = found


def require_tenant_bearer_or_basic() -> None:
    """before_request of /ls (Label Studio's ML backend): the API key as a Bearer token, or as
    the password of HTTP Basic auth, which is how Label Studio sends credentials (its "Basic
    auth" option; the user name is not checked). A live key or 401, without a challenge."""
    credentials = request.authorization
    raw_key = None
    if credentials is not None and credentials.type == "basic":
        raw_key = credentials.password
    elif credentials is not None and credentials.type == "bearer":
        raw_key = credentials.token
    # No `WWW-Authenticate: Basic` challenge on the 401: a browser would ask its user for the
    # password and then send it on its own with every request to this origin, cross-site ones too.
    if not raw_key:
        raise ApiError(401, "unauthorized", "send the API key as the HTTP Basic auth password (any user name) "
                       "or as `Authorization: Bearer <api key>`")
    with read_transaction() as session:
        tenant_id = tenants.tenant_id_for_key(session, raw_key)
    if tenant_id is None:
        raise ApiError(401, "unauthorized", "API key is unknown or revoked")
    g.tenant_id = tenant_id
