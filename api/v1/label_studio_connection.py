"""A label set's Label Studio connection: where reftag reads the project's annotations before
training (api/interop/label_studio_pull.py), so that none is lost when the webhook could not
deliver it."""
from __future__ import annotations

from flask import Blueprint, g

from service import secret_box
from store import label_studio as connections
from store.errors import NotFound

from .. import broker
from ..db import read_transaction, transaction
from ..interop import label_studio_pull
from ..openapi import operation
from ..requests import parse_body, settings
from .schemas import LabelStudioConnectionIn, LabelStudioConnectionOut, LabelStudioPullOut, connection_json

bp = Blueprint("label_studio_connection", __name__, url_prefix="/label-sets/<id:label_set_id>/label-studio")


def no_connection(label_set_id: str) -> NotFound:
    return NotFound(f"label set {label_set_id!r} has no Label Studio connection; PUT one first",
                    code="no_label_studio_connection")


@bp.put("")
@operation("Connect a Label Studio project", tag="label studio", body=LabelStudioConnectionIn,
           responses={200: LabelStudioConnectionOut}, errors=(404, 422))
def connect(label_set_id: str):
    """Sets (or replaces) the project reftag reads annotations from. The URL's host must be one
    the operator allows (REFTAG_LABEL_STUDIO_HOSTS; 422 `label_studio_host_not_allowed`
    otherwise). The token is sealed with the deployment's secret key and never shown again."""
    body = parse_body(LabelStudioConnectionIn)
    url = label_studio_pull.allowed_url(body.url, settings().label_studio_hosts)
    with transaction() as session:
        row = connections.connect(session, g.tenant_id, label_set_id, url, body.project,
                                  secret_box.seal(settings(), body.token))
        return connection_json(row)


@bp.get("")
@operation("Show the Label Studio connection", tag="label studio", responses={200: LabelStudioConnectionOut},
           errors=(404,))
def show(label_set_id: str):
    """The connection and what its latest pull did (never the token)."""
    with read_transaction() as session:
        row = connections.connection(session, g.tenant_id, label_set_id)
        if row is None:
            raise no_connection(label_set_id)
        return connection_json(row)


@bp.delete("")
@operation("Disconnect Label Studio", tag="label studio", responses={204: "disconnected"}, errors=(404,))
def disconnect(label_set_id: str):
    """Forgets the connection and its token; the examples stay."""
    with transaction() as session:
        if not connections.disconnect(session, g.tenant_id, label_set_id):
            raise no_connection(label_set_id)
    return "", 204


@bp.post("/pull")
@operation("Pull annotations from Label Studio", tag="label studio", responses={200: LabelStudioPullOut},
           errors=(404, 502))
def pull(label_set_id: str):
    """Reads every annotated task of the project and makes the examples match: new annotations
    added, changed ones relabelled, deleted ones removed (train requests do this first)."""
    outcome = label_studio_pull.pull(label_set_id)
    if outcome is None:
        raise no_connection(label_set_id)
    if outcome.get("added") or outcome.get("relabelled"):
        broker.retrain_if_due(g.tenant_id, label_set_id)
    return outcome
