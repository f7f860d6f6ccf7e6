"""Secrets reftag must send on (a Label Studio API token), sealed at rest with Fernet
(AES-128-CBC + HMAC-SHA256) under a key derived from the deployment's secret key
(REFTAG_SECRET_KEY; the embedded default keeps one in var/secret-key). A database dump alone
does not give the token away; changing the secret key makes sealed tokens unreadable, and each
connection must be set again."""
from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from .settings import Settings, dashboard_secret_key


class Unsealable(Exception):
    """Sealed under another secret key (REFTAG_SECRET_KEY changed since), or damaged."""


def _fernet(settings: Settings) -> Fernet:
    # Domain-separated from the session cookie's use of the same secret.
    digest = hashlib.sha256(b"reftag sealed secrets\0" + dashboard_secret_key(settings).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(settings: Settings, secret: str) -> bytes:
    return _fernet(settings).encrypt(secret.encode())


def unseal(settings: Settings, sealed: bytes) -> str:
    try:
        return _fernet(settings).decrypt(sealed).decode()
    except InvalidToken:
        raise Unsealable("the stored token cannot be read with this REFTAG_SECRET_KEY (it was changed?); "
                         "set the Label Studio connection again") from None
