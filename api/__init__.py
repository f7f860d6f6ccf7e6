"""reftag's web tier: `create_app()` builds the Flask app from settings, in three parts — the
v1 HTTP API (`v1/`), interop with other labeling tools (`interop/`: file formats and the Label
Studio ML backend) and the dashboard (`ui/`) — over the plumbing they share (auth, database
sessions, errors, request parsing, the broker, the OpenAPI document). It never imports torch:
every model call goes through a worker; of reft_core it reads only the torch-free training
options."""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, g, has_request_context, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.routing import BaseConverter

from service import logs
from service.settings import Settings, get_settings

from . import auth, cli, db, errors, security_headers
from .interop import label_studio_backend
from .ui import dashboard
from .v1 import base_models, jobs, label_sets, label_studio_connection, loop, meta, metrics, predict


class JsonProvider(DefaultJSONProvider):
    """Keys in the order the code writes them; Chinese as Chinese, not as escapes."""

    sort_keys = False
    ensure_ascii = False


class IdConverter(BaseConverter):
    """Object ids in paths (`ls_…`, `job_…`): anything else is a 404 before it reaches the
    database (which may refuse it: PostgreSQL text cannot hold NUL)."""

    regex = r"[A-Za-z0-9_\-]{1,64}"
    part_isolating = True


def request_log_fields() -> dict[str, Any]:
    """Log fields of the request being served: the ids in its path, the tenant of its key."""
    if not has_request_context():
        return {}
    fields = {name: value for name, value in (request.view_args or {}).items() if name in ("job_id", "label_set_id")}
    if g.get("tenant_id"):
        fields["tenant"] = g.tenant_id
    return fields


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask(__name__, static_folder=None)
    app.config["REFTAG_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.url_map.converters["id"] = IdConverter
    app.json = JsonProvider(app)
    logs.configure("web")  # under gunicorn; a test runner or host app that set up logging keeps theirs
    logs.add_context_provider(request_log_fields)
    logging.getLogger("reftag").setLevel(logging.INFO)

    db.init_app(app)
    errors.init_app(app)
    security_headers.init_app(app)

    v1 = Blueprint("v1", __name__, url_prefix="/v1")
    v1.before_request(auth.require_tenant)
    for resource in (label_sets.bp, label_studio_connection.bp, base_models.bp, jobs.bp, loop.bp, predict.bp):
        v1.register_blueprint(resource)
    app.register_blueprint(v1)
    app.register_blueprint(label_studio_backend.bp)
    app.register_blueprint(meta.bp)
    app.register_blueprint(metrics.bp)
    dashboard.init_app(app)
    app.cli.add_command(cli.cli)
    return app
