"""Small synchronous predictions through the `predict` queue."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, g

from store import adapters

from .. import broker
from ..db import read_transaction
from ..openapi import operation
from ..requests import parse_body, settings
from .schemas import PredictOut, PredictRequest

bp = Blueprint("predict", __name__)


@bp.post("/predict")
@operation("Tag a few texts now", tag="predict", body=PredictRequest, responses={200: PredictOut},
           errors=(404, 409, 502, 503, 504))
def predict():
    """At most `max_predict_items` texts, answered within `predict_timeout` seconds by a
    worker on the `predict` queue; for more, submit a job."""
    return {"results": tag_now(g.tenant_id, parse_body(PredictRequest))}


def tag_now(tenant_id: str, body: PredictRequest) -> list[dict[str, Any]]:
    """The request's items tagged by a predict worker, as results (what POST /v1/predict and
    the dashboard's "Try" answer)."""
    with read_transaction() as session:
        adapters.resolve_adapter(session, tenant_id, body.label_set_id, body.adapter_version)
    predictions = broker.predict(tenant_id, body.label_set_id, body.adapter_version,
                                 [item.text for item in body.items], timeout=settings().predict_timeout)
    return [
        {"item_id": str(item.id) if item.id is not None else str(i), "labels": p["labels"], "scores": p["scores"],
         "needs_review": p.get("needs_review", False), "confidence": p.get("confidence"),
         "adapter_version": p.get("adapter_version"), "error": None, **({"spans": p["spans"]} if "spans" in p else {})}
        for i, (item, p) in enumerate(zip(body.items, predictions))
    ]
