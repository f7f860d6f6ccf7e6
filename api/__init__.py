"""reftag's web tier: `create_app()` builds the Flask app from settings. It imports neither
torch nor reft_core; every model call goes through a worker."""
from __future__ import annotations

import logging

from flask import Blueprint, Flask
from werkzeug.routing import BaseConverter

from store.settings import Settings, get_settings

from . import auth, cli, db, errors, jobs, label_sets, meta, predict


class IdConverter(BaseConverter):
    """Object ids in paths (`ls_…`, `job_…`): anything else is a 404 before it reaches the
    database (which may refuse it: PostgreSQL text cannot hold NUL)."""

    regex = r"[A-Za-z0-9_\-]{1,64}"
    part_isolating = True


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask(__name__, static_folder=None)
    app.config["REFTAG_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.url_map.converters["id"] = IdConverter
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    logging.getLogger("reftag").setLevel(logging.INFO)

    db.init_app(app)
    errors.init_app(app)

    v1 = Blueprint("v1", __name__, url_prefix="/v1")
    v1.before_request(auth.require_tenant)
    for resource in (label_sets.bp, jobs.bp, predict.bp):
        v1.register_blueprint(resource)
    app.register_blueprint(v1)
    app.register_blueprint(meta.bp)
    app.cli.add_command(cli.cli)
    return app
