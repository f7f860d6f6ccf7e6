"""What the store refuses, as exceptions with a stable `code`, a message a person can act on,
and `details` (JSON pointers into the request where there is one). The API turns them into its
error format: NotFound → 404, Conflict → 409, Invalid → 422, OverQuota → 429 with Retry-After."""
from __future__ import annotations

from typing import Any

MAX_DETAILS = 100  # problems listed in one error; the message gives the full count


class StoreError(Exception):
    code = "error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []
        if code:
            self.code = code


class NotFound(StoreError):
    code = "not_found"


class Conflict(StoreError):
    code = "conflict"


class Invalid(StoreError):
    code = "invalid"


class OverQuota(StoreError):
    """A tenant's quota is used up for now: retry after `retry_after` seconds."""

    code = "over_quota"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None, code: str | None = None,
                 retry_after: int = 30):
        super().__init__(message, details, code)
        self.retry_after = retry_after
