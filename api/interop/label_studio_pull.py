"""Reading a Label Studio project's annotations through Label Studio's REST API (a pull), so that
none is lost when the webhook could not deliver it (it had no credentials, reftag was down).

A label set's connection names the Label Studio URL, the project and an API token of a Label
Studio user (Account & Settings → Access Token: a legacy token is sent as `Token <key>`; a
personal access token, a JWT, is first exchanged for an access token at `/api/token/refresh/`).
The URL is a tenant's, so reftag fetches it only when its host is in the operator's
REFTAG_LABEL_STUDIO_HOSTS (default: this machine), and never follows a redirect elsewhere.

A pull reads the project's labeling config (`GET /api/projects/{id}/`) and its tasks with their
annotations (the JSON export, `GET /api/projects/{id}/export?exportType=JSON`, of every task: only
"finished" ones would miss a task with fewer annotations than the project's overlap), and makes
the examples match (`store.label_studio.store_annotations`, complete). Train requests pull first.
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import g

from service import secret_box
from store import label_sets
from store import label_studio as connections
from store.label_studio import Annotated

from ..db import read_transaction, transaction
from ..errors import ApiError, invalid
from ..requests import settings
from .label_studio import LabelConfig, annotation_choices, annotation_spans, chosen_annotation, label_config

log = logging.getLogger("reftag.label_studio")


class PullFailed(ApiError):
    """Label Studio could not be read: unreachable, refused the token, or answered nonsense."""

    def __init__(self, message: str):
        super().__init__(502, "label_studio_unavailable", message)


def allowed_url(url: str, hosts: tuple[str, ...], pointer: str = "/url") -> str:
    """The Label Studio base URL, when its host is one the operator allows; 422 saying which
    setting to change otherwise."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        raise invalid([{"pointer": pointer, "message": "a Label Studio URL is http(s)://host[:port][/path], "
                                                       "without user or password"}], code="invalid_label_studio_url")
    if host not in hosts:
        allowed = ", ".join(hosts) or "no host"
        raise invalid([{"pointer": pointer, "host": host, "message": f"reftag may not connect to {host!r}: the "
                        f"operator allows only {allowed} (REFTAG_LABEL_STUDIO_HOSTS)"}],
                      code="label_studio_host_not_allowed")
    return parts._replace(query="", fragment="").geturl().rstrip("/")


class LabelStudioClient:
    """The few calls of Label Studio's REST API a pull needs."""

    def __init__(self, url: str, token: str, timeout: float):
        self.url, self.timeout = url, timeout
        self.http = requests.Session()
        self.http.headers["Authorization"] = self.authorization(token)

    def authorization(self, token: str) -> str:
        if token.count(".") != 2:  # a legacy token
            return f"Token {token}"
        access = self.call("POST", "/api/token/refresh/", json={"refresh": token}, auth=False)
        if not isinstance(access, dict) or not isinstance(access.get("access"), str):
            raise PullFailed("Label Studio did not exchange the personal access token for an access token")
        return f"Bearer {access['access']}"

    def call(self, method: str, path: str, auth: bool = True, **kwargs: Any) -> Any:
        headers = None if auth else {"Authorization": ""}
        try:
            response = self.http.request(method, self.url + path, timeout=self.timeout, allow_redirects=False,
                                         headers=headers, **kwargs)
        except requests.RequestException as e:
            raise PullFailed(f"Label Studio at {self.url} cannot be reached: {e}") from None
        if response.status_code in (401, 403):
            raise PullFailed(f"Label Studio refused the connection's API token ({response.status_code}) on {path}; "
                             "set the connection again with a valid token")
        if response.status_code != 200:
            raise PullFailed(f"Label Studio answered {response.status_code} to {method} {path}")
        try:
            return response.json()
        except ValueError:
            raise PullFailed(f"Label Studio's answer to {path} is not JSON") from None

    def label_config(self, project_id: int, kind: str) -> LabelConfig:
        project = self.call("GET", f"/api/projects/{project_id}/")
        return label_config(project.get("label_config") if isinstance(project, dict) else None,
                            "/label_studio/project/label_config", kind)

    def annotated_tasks(self, project_id: int) -> list[Any]:
        tasks = self.call("GET", f"/api/projects/{project_id}/export",
                          params={"exportType": "JSON", "download_all_tasks": "true"})
        if not isinstance(tasks, list):
            raise PullFailed("Label Studio's JSON export is not a list of tasks")
        return tasks


def tasks_as_annotated(tasks: list[Any], config: LabelConfig) -> tuple[list[Annotated], list[dict[str, Any]]]:
    """Each task's chosen annotation (ground truth, else its latest not skipped) as an example;
    and the tasks that give none (no text, nothing chosen) with the reason."""
    annotated: list[Annotated] = []
    skipped: list[dict[str, Any]] = []
    for task in tasks:
        if not isinstance(task, dict) or not isinstance(task.get("id"), int):
            continue
        text = task["data"].get(config.data_key) if isinstance(task.get("data"), dict) else None
        annotation = chosen_annotation(task, "annotations")
        if annotation is None:
            continue  # nothing annotated (or only skipped): not an example, and removed if it was one
        if not isinstance(text, str) or not text.strip():
            skipped.append({"task_id": task["id"], "reason": f"no text in data.{config.data_key}"})
            continue
        labels: list[str] = []
        spans: list[dict[str, Any]] | None = None
        try:
            if config.tag == "labels":  # a spans set: the regions marked (none: a text with no span)
                spans = annotation_spans(annotation, config.from_name, text)[0]
            else:
                labels, _ = annotation_choices(annotation, config.from_name)
        except ApiError as e:
            skipped.append({"task_id": task["id"], "reason": e.message})
            continue
        if not labels and spans is None:
            skipped.append({"task_id": task["id"], "reason": f"chooses nothing in <Choices name={config.from_name!r}>"})
            continue
        annotation_id = annotation.get("id")
        if spans is not None and len(text) > settings().max_text_chars:
            skipped.append({"task_id": task["id"], "reason": f"the text is longer than {settings().max_text_chars} "
                                                              "characters (its spans cannot be cut with it)"})
            continue
        annotated.append(Annotated(task["id"], annotation_id if isinstance(annotation_id, int) else None,
                                   text[: settings().max_text_chars], labels, spans))
    return annotated, skipped


def pull(label_set_id: str) -> dict[str, Any] | None:
    """Pull the label set's Label Studio project into its examples; what changed, or None when it
    has no connection. PullFailed (502) when Label Studio cannot be read; recorded either way."""
    with read_transaction() as session:
        row = connections.connection(session, g.tenant_id, label_set_id)
        if row is None:
            return None
        url, project_id, sealed = row.url, row.project_id, row.sealed_token
        kind = label_sets.label_set_row(session, g.tenant_id, label_set_id).kind
    try:
        url = allowed_url(url, settings().label_studio_hosts)  # the operator may have narrowed the list since
        token = secret_box.unseal(settings(), sealed)
        client = LabelStudioClient(url, token, settings().label_studio_timeout)
        config = client.label_config(project_id, kind)
        annotated, skipped = tasks_as_annotated(client.annotated_tasks(project_id), config)
    except (ApiError, secret_box.Unsealable) as e:
        message = e.message if isinstance(e, ApiError) else str(e)
        with transaction() as session:
            connections.record_pull(session, label_set_id, {"error": message})
        raise e if isinstance(e, PullFailed) else PullFailed(message) from None
    with transaction() as session:
        synced = connections.store_annotations(session, g.tenant_id, label_set_id, annotated, complete=True)
        outcome = {**synced.as_json(), "tasks": len(annotated), "skipped": skipped[:100]}
        connections.record_pull(session, label_set_id, outcome)
    log.info("pulled Label Studio project %s into label set %s: %d added, %d relabelled, %d removed",
             project_id, label_set_id, synced.added, synced.relabelled, synced.removed,
             extra={"label_set_id": label_set_id})
    return outcome


def pull_before_training(label_set_id: str) -> dict[str, Any] | None:
    """A train request's pull: a failure does not stop the training (the webhook may have
    delivered everything); it is logged, recorded on the connection, and answered."""
    try:
        return pull(label_set_id)
    except PullFailed as e:
        log.warning("training label set %s without pulling Label Studio first: %s", label_set_id, e.message,
                    extra={"label_set_id": label_set_id})
        return {"error": e.message}
