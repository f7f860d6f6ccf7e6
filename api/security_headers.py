"""Headers every answer carries so that a browser treats reftag's pages as what they are: no
framing by another site (clickjacking the dashboard's forms), no guessing a type other than the
one sent (a text file read as HTML), and a Content-Security-Policy that lets a page run only the
scripts reftag serves itself. A page that needs more sets its own policy (/docs: a nonce for the
script that starts Swagger UI) and keeps it."""
from __future__ import annotations

from flask import Flask, Response

# The dashboard: its own script and stylesheet; inline style attributes (bar widths) but no inline
# script; it fetches (progress polls, "Try") and posts forms to this origin only.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
# Anything else (JSON, CSV, files): nothing in it may load or run anything, should a browser render it.
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


def add_security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy",
                                PAGE_POLICY if response.mimetype == "text/html" else DATA_POLICY)
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
