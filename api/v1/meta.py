"""Liveness, the OpenAPI document and the page that renders it."""
from __future__ import annotations

from flask import Blueprint, Response, current_app

from ..openapi import document, operation
from .docs_page import DOCS_HTML
from .schemas import Health

bp = Blueprint("meta", __name__)


@bp.get("/healthz")
@operation("Liveness", tag="meta", responses={200: Health}, public=True)
def healthz():
    return {"status": "ok"}


@bp.get("/openapi.json")
@operation("This API as an OpenAPI 3.1 document", tag="meta", responses={200: "The OpenAPI document"}, public=True)
def openapi_json():
    if "reftag_openapi" not in current_app.extensions:
        current_app.extensions["reftag_openapi"] = document(current_app)
    return current_app.extensions["reftag_openapi"]


@bp.get("/docs")
@operation("Human-readable API reference (renders /openapi.json)", tag="meta", responses={200: "An HTML page"},
           public=True)
def docs():
    return Response(DOCS_HTML, mimetype="text/html")
