"""Every error the API answers, in one shape:
`{"error": {"code": "...", "message": "...", "details": [...]}}`.

A 4xx says what to fix; details carry a JSON pointer (`/items/3/text`) where the problem is in
the request. Anything unexpected is logged and answered as a bare 500 that leaks nothing.
"""
from __future__ import annotations

import logging
from typing import Any

import kombu.exceptions
import pydantic
import redis.exceptions
from flask import Flask, jsonify
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException

from store.errors import MAX_DETAILS, Conflict, Invalid, NotFound, OverQuota, StoreError

log = logging.getLogger("reftag.api")

# What enqueueing raises when Redis (the broker) cannot be reached.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)
RETRY_AFTER_SECONDS = 5

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
}
STORE_STATUS = {NotFound: 404, Conflict: 409, Invalid: 422, OverQuota: 429}


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]]


class ErrorOut(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or []
        self.headers = headers or {}


def broker_unavailable() -> ApiError:
    return ApiError(503, "broker_unavailable",
                    f"the work queue (Redis) cannot be reached; nothing was stored, retry in {RETRY_AFTER_SECONDS} s",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def json_pointer(loc: tuple[Any, ...]) -> str:
    """RFC 6901 pointer from a pydantic error location."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in loc)


def validation_error(error: pydantic.ValidationError, document: Any = None) -> ApiError:
    """422 with one detail per problem. Given the validated `document`, pointers leave out the
    names pydantic gives the members of a union (an item id is a string or an integer: its errors
    come as `id/constrained-int`…), and where one member took the value and failed on its content,
    the other members' "wrong type" errors are dropped: `/items/0/id: must not contain NUL`."""
    found: list[tuple[dict[str, Any], bool]] = []  # (detail, from a union member)
    for e in error.errors(include_url=False, include_input=False):
        loc, union_member = located_in(tuple(e["loc"]), document) if document is not None else (tuple(e["loc"]), False)
        found.append(({"pointer": json_pointer(loc), "message": e["msg"], "type": e["type"]}, union_member))
    took_it = {d["pointer"] for d, member in found if member and not wrong_type(d["type"])}
    return invalid([d for d, member in found if not (member and wrong_type(d["type"]) and d["pointer"] in took_it)])


def located_in(loc: tuple[Any, ...], document: Any) -> tuple[tuple[Any, ...], bool]:
    """The parts of a pydantic error location that address `document`, and whether any were left
    out: a part that neither names a key of an object (present or missing) nor indexes an array
    is the label of a union member."""
    path: list[Any] = []
    node, labelled = document, False
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str):
            path.append(part)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        else:
            labelled = True
    return tuple(path), labelled


def wrong_type(error_type: str) -> bool:
    return error_type.endswith("_type") or error_type == "literal_error"


def invalid(details: list[dict[str, Any]], code: str = "invalid_request") -> ApiError:
    """422 listing the problems: the first few in the message, at most MAX_DETAILS in details."""
    shown = "; ".join(f"{d.get('pointer') or '/'}: {d['message']}" for d in details[:5])
    more = f" (and {len(details) - 5} more)" if len(details) > 5 else ""
    return ApiError(422, code, f"{len(details)} invalid field(s): {shown}{more}", details[:MAX_DETAILS])


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None):
    response = jsonify({"error": {"code": code, "message": message, "details": details or []}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def store_error_response(e: StoreError):
    status = next((code for kind, code in STORE_STATUS.items() if isinstance(e, kind)), 422)
    headers = {"Retry-After": str(e.retry_after)} if isinstance(e, OverQuota) else None
    return error_response(status, e.code, e.message, e.details, headers)


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(e: ApiError):
        return error_response(e.status, e.code, e.message, e.details, e.headers)

    @app.errorhandler(StoreError)
    def _store_error(e: StoreError):
        return store_error_response(e)

    @app.errorhandler(pydantic.ValidationError)
    def _validation_error(e: pydantic.ValidationError):
        return _api_error(validation_error(e))

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        status = e.code or 500
        headers = {}
        if status == 405 and e.response is None:
            headers["Allow"] = ", ".join(getattr(e, "valid_methods", None) or [])
        message = e.description or e.name
        if status == 413:
            message = f"request body is larger than the limit of {app.config['MAX_CONTENT_LENGTH']} bytes"
        return error_response(status, HTTP_CODES.get(status, "http_error"), message, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; it has been logged")
