"""Liveness, the OpenAPI document, and /docs: Swagger UI over that document, its files served
from the swagger-ui-bundle-v2 package by this app (no CDN: the page works offline, and its
Content-Security-Policy lets it load nothing from elsewhere)."""
from __future__ import annotations

import secrets

from flask import Blueprint, current_app, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from ..openapi import document, operation
from .schemas import Health

bp = Blueprint("meta", __name__, template_folder="templates")

# "Try it out" calls this same origin; Swagger UI's React sets style attributes, its icons are data: URLs.
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; frame-ancestors 'none'")


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
@operation("The API reference: Swagger UI over /openapi.json (Authorize with an API key, then try it out)",
           tag="meta", responses={200: "An HTML page"}, public=True)
def docs():
    nonce = secrets.token_urlsafe(16)
    return render_template("docs.html", nonce=nonce), {"Content-Security-Policy": DOCS_POLICY.format(nonce=nonce)}


@bp.get("/docs/swagger-ui/<path:filename>")
@operation("Swagger UI's script, stylesheet and icons", tag="meta",
           responses={200: "A static file", 404: "No such file"}, public=True)
def swagger_ui_file(filename: str):
    return send_from_directory(str(swagger_ui_path), filename, max_age=24 * 3600)
