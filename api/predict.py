"""Small synchronous predictions through the `predict` queue."""
from __future__ import annotations

from flask import Blueprint, g

from store import catalog

from . import broker
from .db import read_transaction
from .openapi import operation
from .schemas import PredictOut, PredictRequest, parse_body, settings

bp = Blueprint("predict", __name__)


@bp.post("/predict")
@operation("Tag a few texts now", tag="predict", body=PredictRequest, responses={200: PredictOut},
           errors=(404, 409, 502, 503, 504))
def predict():
    """At most `max_predict_items` texts, answered within `predict_timeout` seconds by a
    worker on the `predict` queue; for more, submit a job."""
    body = parse_body(PredictRequest)
    with read_transaction() as session:
        catalog.resolve_adapter(session, g.tenant_id, body.label_set_id, body.adapter_version)
    predictions = broker.predict(g.tenant_id, body.label_set_id, body.adapter_version,
                                 [item.text for item in body.items], timeout=settings().predict_timeout)
    results = [
        {"item_id": str(item.id) if item.id is not None else str(i), "labels": p["labels"], "scores": p["scores"],
         "needs_review": p.get("needs_review", False), "adapter_version": p.get("adapter_version"), "error": None}
        for i, (item, p) in enumerate(zip(body.items, predictions))
    ]
    return {"results": results}
