"""The OpenAPI 3.1 document, generated from the app's routes and the pydantic schemas.

Each view declares itself with `@operation(...)`; `document(app)` walks `app.url_map`, so a
route without a declaration still appears (and a test fails on it), and the request and
response schemas are the same classes that validate and build the JSON.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from .errors import ErrorOut

JSON = "application/json"
PARAM = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
PATH_SCHEMAS = {
    "int": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "id": {"type": "string", "pattern": "^[A-Za-z0-9_\\-]{1,64}$"},
}
# The groups of operations, in the order /docs shows them: the API first, the pages last.
TAGS = {
    "label sets": "Taxonomies and their human-labelled examples",
    "adapters": "A label set's trained versions: list them, activate one (or roll back)",
    "jobs": "Jobs (train, tag, suggest, audit): submit a tag job, follow any, read the results, cancel",
    "review": "A tag job's results that need a person, most useful first; accepting or correcting one",
    "loop": "What to label next (suggest jobs), which labels look wrong (audit jobs), a decision on each finding",
    "predict": "A few texts tagged now, through the predict queue",
    "label studio": "Label Studio's ML backend, one per label set (Basic auth, the API key as password)",
    "meta": "Liveness, metrics, this document and /docs",
    "dashboard": "The dashboard's pages (signed in with a session cookie, not a bearer key)",
}
ERROR_TEXT = {
    400: "Malformed JSON, CSV or JSONL",
    401: "Missing, unknown or revoked API key",
    404: "No such object for this key's tenant",
    405: "Method not allowed",
    409: "Conflict with the current state",
    413: "Body or item count over a limit",
    415: "Unsupported format",
    422: "Invalid field; details carry a JSON pointer per problem",
    429: "Over a per-tenant quota; retry after Retry-After",
    502: "The worker failed",
    503: "The broker (Redis) is unreachable; retry after Retry-After",
    504: "No worker answered in time",
}


def operation(
    summary: str,
    *,
    tag: str,
    responses: dict[int, type[BaseModel] | str],
    body: type[BaseModel] | None = None,
    body_media: dict[str, str] | None = None,
    response_media: dict[str, str] | None = None,
    query: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (),
    headers: dict[str, str] | None = None,
    public: bool = False,
    basic: bool = False,
) -> Callable[[Callable], Callable]:
    """Declare a view for the OpenAPI document. `responses` maps a status to a schema (or a
    description); `errors` lists the error statuses it can answer beyond the common ones;
    `body_media`/`response_media` name extra media types (media type → description); `basic`:
    the API key is also taken as an HTTP Basic password (Label Studio's ML backend)."""

    def mark(view: Callable) -> Callable:
        view.openapi = dict(  # type: ignore[attr-defined]
            summary=summary, tag=tag, responses=responses, body=body, body_media=body_media or {},
            response_media=response_media or {}, query=query, errors=errors, headers=headers or {}, public=public,
            basic=basic, doc=inspect.cleandoc(view.__doc__ or ""))
        return view

    return mark


def _models(app: Flask) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorOut, "serialization")]
    for view in app.view_functions.values():
        spec = getattr(view, "openapi", None)
        if not spec:
            continue
        if spec["body"]:
            found.append((spec["body"], "validation"))
        found += [(model, "serialization") for model in spec["responses"].values() if isinstance(model, type)]
    return list(dict.fromkeys(found))


def document(app: Flask) -> dict[str, Any]:
    refs, top = models_json_schema(_models(app), ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        spec = getattr(app.view_functions[rule.endpoint], "openapi", None) or {
            "summary": rule.endpoint, "tag": "undocumented", "responses": {200: "OK"}, "body": None,
            "body_media": {}, "response_media": {}, "query": None, "errors": (), "headers": {}, "public": True,
            "basic": False, "doc": ""}
        path = PARAM.sub(r"{\2}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule, spec, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "reftag",
            "version": "1",
            "description": "Data labeling with LoReFT adapters. JSON formats and worked examples: docs/api.md. "
                           "Errors are always {\"error\": {\"code\", \"message\", \"details\"}}.",
        },
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "API key"},
                                "basic": {"type": "http", "scheme": "basic",
                                          "description": "any user name, the API key as the password"}},
        },
    }


def _operation(rule: Any, spec: dict[str, Any], refs: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": spec["summary"], "tags": [spec["tag"]],
                          "operationId": rule.endpoint.replace(".", "_")}
    if spec["doc"]:
        op["description"] = spec["doc"]
    params = [{"name": name, "in": "path", "required": True, "schema": PATH_SCHEMAS.get(converter, {"type": "string"})}
              for converter, name in PARAM.findall(rule.rule)]
    if spec["query"]:
        query_schema = spec["query"].model_json_schema()
        params += [{"name": name, "in": "query", "required": False, "schema": prop}
                   for name, prop in query_schema["properties"].items()]
    params += [{"name": name, "in": "header", "required": False, "schema": {"type": "string", "maxLength": 200},
                "description": text} for name, text in spec["headers"].items()]
    if params:
        op["parameters"] = params
    if spec["body"] or spec["body_media"]:
        content = {JSON: {"schema": refs[(spec["body"], "validation")]}} if spec["body"] else {}
        content.update({media: {"schema": {"type": "string", "description": text}}
                        for media, text in spec["body_media"].items()})
        op["requestBody"] = {"required": True, "content": content}
    responses: dict[str, Any] = {}
    for status, model in spec["responses"].items():
        if isinstance(model, type):
            content = {JSON: {"schema": refs[(model, "serialization")]}}
            for media, text in spec["response_media"].items():
                if media == JSON:  # an export that is JSON too (an array): which one depends on the query
                    content[JSON] = {"schema": {"anyOf": [refs[(model, "serialization")],
                                                          {"type": "array", "description": text}]}}
                else:
                    content[media] = {"schema": {"type": "string", "description": text}}
            responses[str(status)] = {"description": model.__doc__ or model.__name__, "content": content}
        else:
            responses[str(status)] = {"description": model}
    error_ref = {JSON: {"schema": refs[(ErrorOut, "serialization")]}}
    common: tuple[int, ...] = () if spec["public"] else (401,)
    if spec["body"]:
        common += (400, 413, 422)
    for status in sorted(set(common + spec["errors"])):
        responses[str(status)] = {"description": ERROR_TEXT.get(status, "Error"), "content": error_ref}
    op["responses"] = responses
    if not spec["public"]:
        op["security"] = [{"bearer": []}, *([{"basic": []}] if spec["basic"] else [])]
    return op
