"""The base models label sets can train on: the bundled ones (and BASE_MODEL's directory), with
what workers report once they have loaded one (its fingerprint, whether a worker holds it)."""
from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint

from reft_core import bases
from workers import metrics as worker_metrics

from ..openapi import operation
from ..requests import settings
from .metrics import redis_client
from .schemas import BaseModelList

log = logging.getLogger("reftag.api")

bp = Blueprint("base_models", __name__, url_prefix="/base-models")


@bp.get("")
@operation("List the base models", tag="label sets", responses={200: BaseModelList})
def list_base_models():
    """Each base: its languages, layers, hidden size; its fingerprint and whether a worker holds
    it now (null/false until a worker has loaded it — workers load a base when a job first needs
    it). `english_default` is what a label set's "auto" picks for Latin-script examples."""
    try:
        reported = worker_metrics.read_bases(redis_client())
    except redis.RedisError as e:  # the list stands without what workers report
        log.warning("base models: Redis cannot be reached: %s", e)
        reported = {}
    configured = settings().english_base
    english = bases.name_of(configured)
    listed: list[dict[str, Any]] = []
    for name in bases.available(configured):
        bundled = bases.BUNDLED.get(name)
        seen = reported.get(name, {})
        listed.append({"name": name, "languages": bundled.languages if bundled else "as the model reads",
                       "layers": seen.get("layers", bundled.layers if bundled else 0),
                       "hidden_size": seen.get("hidden_size", bundled.hidden_size if bundled else 0),
                       "fingerprint": seen.get("fingerprint"), "loaded": bool(seen.get("workers")),
                       "english_default": name == english})
    return {"base_models": listed}
