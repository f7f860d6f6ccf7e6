"""reftag against a real Label Studio (1.23.2, from PyPI, in its own cached virtualenv: see
label_studio_venv.sh; the first run installs it, a few minutes; later runs start it in well under
a minute), started on SQLite with exactly the environment the README tells users to set.

Over Label Studio's own REST API, as its UI would: create a project, connect reftag's ML backend
(Basic auth), retrieve predictions for 200 tasks, annotate (and relabel) tasks while the webhook
Label Studio created has no credentials (every event 401: lost on the fast path), add the
credentials to the webhook as the README says, annotate more, delete one annotation, connect
reftag to the project and press "Start Training": every annotation is an example in reftag, with
its latest label, the deleted one is gone, and the new version trains. And a spans set with a
`<Labels>` project: pre-annotations of type `labels` at Label Studio's (UTF-16) offsets, and an
annotation made in Label Studio stored as span examples in characters.

Time: installing Label Studio the first time takes a few minutes (cached after); then Label
Studio's first start (database migrations, ~1.5 min on a busy 2-core machine), two short
trainings and 200 predictions: about 4–6 minutes in all."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import REPO, Process, free_port, wait_for

pytestmark = pytest.mark.slow

# What the README's Label Studio section tells users to set (and nothing else of Label Studio's).
README_ENV = {"ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false"}
N_TASKS = 200
BEFORE_CREDENTIALS, AFTER_CREDENTIALS = 24, 12


class LabelStudio:
    """A Label Studio server with one user whose legacy API token is known."""

    def __init__(self, run_dir: Path) -> None:
        venv = subprocess.run(["bash", str(REPO / "tests/e2e/label_studio_venv.sh")], check=True,
                              capture_output=True, text=True).stdout.strip()
        self.token = "e2e" + os.urandom(16).hex()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))},
               **README_ENV, "HOME": str(run_dir)}
        # The user and its token are this test's set-up; a user signs up in the browser instead.
        self.process = Process("label-studio", [
            f"{venv}/bin/label-studio", "start", "--port", str(port), "--host", self.url, "--internal-host",
            "127.0.0.1", "--data-dir", str(run_dir / "data"), "--username", "e2e@example.com",
            "--password", "e2e-password-1", "--user-token", self.token, "--enable-legacy-api-token"],
            env, run_dir)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {self.token}"
        # Its first start migrates a new SQLite database: minutes on a busy 2-core machine.
        wait_for(lambda: self.http.get(f"{self.url}/api/projects/", timeout=5).status_code == 200, 900,
                 "Label Studio", self.process)

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        response = self.http.request(method, self.url + path, timeout=kwargs.pop("timeout", 120), **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:2000]}"
        return response

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    server = LabelStudio(tmp_path_factory.mktemp("label-studio"))
    yield server
    print(server.process.tail(60))
    server.stop()


def label_config(label_names: list[str]) -> str:
    choices = "".join(f'<Choice value="{name}"/>' for name in label_names)
    return (f'<View><Text name="news" value="$headline"/><Choices name="topic" toName="news" choice="single">'
            f"{choices}</Choices></View>")


def examples_of(stack, label_set_id: str) -> dict[str, list[str]]:
    """The label set's examples, read from the stack's database (the API lists none)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(stack.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT text, labels FROM examples WHERE label_set_id = :id"),
                                      {"id": label_set_id})
            return {row.text: json.loads(row.labels) if isinstance(row.labels, str) else row.labels for row in rows}
    finally:
        engine.dispose()


def choose(label: str) -> dict:
    return {"result": [{"from_name": "topic", "to_name": "news", "type": "choices", "value": {"choices": [label]}}],
            "was_cancelled": False, "ground_truth": False}


# Above the suite's 600 s: the first run installs Label Studio (inside the fixture, counted here).
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("new_database", ["sqlite"], indirect=True)
def test_every_annotation_reaches_reftag_even_those_the_webhook_lost(stack, news_en, label_studio):
    # A short training for every version of the set, "Start Training" in Label Studio included.
    reftag = stack.client()
    created = reftag.post(f"{stack.base_url}/v1/label-sets", timeout=30, json={
        "name": "news in Label Studio", "labels": [{"name": n} for n in news_en.label_names],
        "config": {"epochs": 2, "min_steps": 0}})
    assert created.status_code == 201, created.text
    ls_id = created.json()["id"]
    seed = [{"text": r["text"], "label": r["label"]} for r in news_en.balanced_train(12)]
    assert reftag.post(f"{stack.base_url}/v1/label-sets/{ls_id}/examples", json={"examples": seed},
                       timeout=60).status_code == 201
    trained = stack.wait_for_job(stack.start_training(ls_id))
    assert trained["status"] == "succeeded", trained
    before = set(examples_of(stack, ls_id))

    project = label_studio.call("POST", "/api/projects/", json={
        "title": "news", "label_config": label_config(news_en.label_names)}).json()
    rows = news_en.test_rows(N_TASKS)
    label_studio.call("POST", f"/api/projects/{project['id']}/import",
                      json=[{"headline": r["text"], "truth": r["label"]} for r in rows])
    tasks = label_studio.call("GET", f"/api/projects/{project['id']}/export",
                              params={"exportType": "JSON", "download_all_tasks": "true"}).json()
    assert len(tasks) == N_TASKS
    truth = {t["id"]: t["data"]["truth"] for t in tasks}
    text = {t["id"]: t["data"]["headline"] for t in tasks}

    # Settings → Model → Connect Model: the README's URL and Basic auth with the API key.
    backend = label_studio.call("POST", "/api/ml/", json={
        "project": project["id"], "title": "reftag", "url": f"{stack.base_url}/ls/{ls_id}",
        "auth_method": "BASIC_AUTH", "basic_auth_user": "labelstudio", "basic_auth_pass": stack.api_key,
        "is_interactive": False}).json()
    assert backend["state"] == "CO", backend  # connected: /health and /setup answered

    # Data Manager → select all → Retrieve Predictions: one /predict for all 200 tasks.
    started = time.monotonic()
    label_studio.call("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions",
                                                         "project": project["id"]},
                      json={"selectedItems": {"all": True, "excluded": []}}, timeout=300)
    predictions: dict[int, list[dict]] = {task_id: [] for task_id in truth}
    for prediction in label_studio.call("GET", "/api/predictions/", params={"project": project["id"]}).json():
        predictions[prediction["task"]].append(prediction)
    assert all(len(p) == 1 for p in predictions.values()), "every task has one prediction"
    assert {p[0]["model_version"] for p in predictions.values()} == {f"reftag-v{trained['adapter_version']}"}
    choices = [p[0]["result"][0]["value"]["choices"] for p in predictions.values()]
    assert all(len(c) == 1 and c[0] in news_en.label_names for c in choices)
    accuracy = sum(p[0]["result"][0]["value"]["choices"] == [truth[t]] for t, p in predictions.items()) / N_TASKS
    print(f"Label Studio retrieved {N_TASKS} predictions in {time.monotonic() - started:.1f}s, accuracy {accuracy:.3f}")

    # Annotations while the webhook Label Studio created has no credentials: reftag refuses each
    # event (401), so none arrives — nor does a relabelling of one of them.
    ids = sorted(truth)
    lost, delivered = ids[:BEFORE_CREDENTIALS], ids[BEFORE_CREDENTIALS:BEFORE_CREDENTIALS + AFTER_CREDENTIALS]
    annotations = {}
    for task_id in lost:
        annotations[task_id] = label_studio.call("POST", f"/api/tasks/{task_id}/annotations/",
                                                 json=choose(truth[task_id])).json()["id"]
    relabelled = lost[0]
    other = next(name for name in news_en.label_names if name != truth[relabelled])
    label_studio.call("PATCH", f"/api/annotations/{annotations[relabelled]}/", json=choose(other))
    assert set(examples_of(stack, ls_id)) == before

    # The README's step: Settings → Webhooks → the ML backend's webhook → add the Authorization header.
    [webhook] = [w for w in label_studio.call("GET", "/api/webhooks/", params={"project": project["id"]}).json()
                 if w["url"].endswith(f"/ls/{ls_id}/webhook")]
    basic = base64.b64encode(f"labelstudio:{stack.api_key}".encode()).decode()
    label_studio.call("PATCH", f"/api/webhooks/{webhook['id']}/", json={"headers": {"Authorization": f"Basic {basic}"}})
    for task_id in delivered:
        annotations[task_id] = label_studio.call("POST", f"/api/tasks/{task_id}/annotations/",
                                                 json=choose(truth[task_id])).json()["id"]
    stored = examples_of(stack, ls_id)
    assert all(stored.get(text[t]) == [truth[t]] for t in delivered)  # the fast path, once it has credentials

    # A person deletes an annotation that reached reftag (Label Studio's webhook says so; reftag
    # leaves that to the pull).
    deleted = delivered[0]
    label_studio.call("DELETE", f"/api/annotations/{annotations.pop(deleted)}/")
    expected = {text[t]: ([other] if t == relabelled else [truth[t]]) for t in annotations}

    # Connect reftag to the project (pull), then "Start Training" in Label Studio.
    connected = reftag.put(f"{stack.base_url}/v1/label-sets/{ls_id}/label-studio", timeout=30, json={
        "url": label_studio.url, "project": project["id"], "token": label_studio.token})
    assert connected.status_code == 200, connected.text
    label_studio.call("POST", f"/api/ml/{backend['id']}/train", json={"use_ground_truth": False}, timeout=300)
    pulled = reftag.get(f"{stack.base_url}/v1/label-sets/{ls_id}/label-studio", timeout=30).json()["last_pull"]
    assert pulled is not None and "error" not in pulled, pulled
    assert (pulled["added"], pulled["removed"], pulled["unchanged"]) == (len(lost), 1, len(delivered) - 1), pulled
    from_label_studio = {t: labels for t, labels in examples_of(stack, ls_id).items() if t not in before}
    assert from_label_studio == expected  # every annotation, with its latest label; the deleted one gone

    newest = reftag.get(f"{stack.base_url}/v1/jobs", params={"label_set_id": ls_id, "type": "train"},
                        timeout=30).json()["jobs"][0]
    assert stack.wait_for_job(newest["id"], timeout=900)["status"] == "succeeded"
    versions = requests.get(f"{stack.base_url}/ls/{ls_id}/versions", auth=("labelstudio", stack.api_key),
                            timeout=30).json()
    assert versions["versions"][0] == f"reftag-v{trained['adapter_version'] + 1}"
    print(versions["message"])


def span_config(label_names: list[str]) -> str:
    labels = "".join(f'<Label value="{name}"/>' for name in label_names)
    return f'<View><Text name="msg" value="$message"/><Labels name="entity" toName="msg">{labels}</Labels></View>'


def utf16(text: str, start: int, end: int) -> str:
    """text[start:end] counted in UTF-16 units, as Label Studio counts offsets."""
    return text.encode("utf-16-le")[2 * start:2 * end].decode("utf-16-le")


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("new_database", ["sqlite"], indirect=True)
def test_a_spans_project_gets_labels_pre_annotations_and_its_annotations_become_span_examples(stack, label_studio):
    from tests.e2e.conftest import LabelledData

    ner = LabelledData("ner_en")
    reftag = stack.client()
    created = reftag.post(f"{stack.base_url}/v1/label-sets", timeout=30, json={
        "name": "entities in Label Studio", "kind": "spans", "labels": [{"name": n} for n in ner.label_names],
        "config": {"min_steps": 60}, "retrain_after": None})
    assert created.status_code == 201, created.text
    ls_id = created.json()["id"]
    assert reftag.post(f"{stack.base_url}/v1/label-sets/{ls_id}/examples", timeout=60, json={
        "examples": [{"text": r["text"], "spans": r["spans"]} for r in ner.train]}).status_code == 201
    trained = stack.wait_for_job(stack.start_training(ls_id))
    assert trained["status"] == "succeeded", trained

    project = label_studio.call("POST", "/api/projects/", json={
        "title": "entities", "label_config": span_config(ner.label_names)}).json()
    # an emoji before the entities: one character to reftag, two UTF-16 units to Label Studio
    texts = [r["text"] for r in ner.test] + ["🙂 " + ner.test[0]["text"]]
    label_studio.call("POST", f"/api/projects/{project['id']}/import", json=[{"message": t} for t in texts])
    tasks = label_studio.call("GET", f"/api/projects/{project['id']}/export",
                              params={"exportType": "JSON", "download_all_tasks": "true"}).json()
    text = {t["id"]: t["data"]["message"] for t in tasks}
    backend = label_studio.call("POST", "/api/ml/", json={
        "project": project["id"], "title": "reftag", "url": f"{stack.base_url}/ls/{ls_id}",
        "auth_method": "BASIC_AUTH", "basic_auth_user": "labelstudio", "basic_auth_pass": stack.api_key,
        "is_interactive": False}).json()
    assert backend["state"] == "CO", backend  # /setup accepted the <Labels> config

    label_studio.call("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions",
                                                         "project": project["id"]},
                      json={"selectedItems": {"all": True, "excluded": []}}, timeout=300)
    predictions = {p["task"]: p for p in label_studio.call("GET", "/api/predictions/",
                                                           params={"project": project["id"]}).json()}
    assert set(predictions) == set(text)
    regions = 0
    for task_id, prediction in predictions.items():
        assert prediction["model_version"] == f"reftag-v{trained['adapter_version']}"
        for region in prediction["result"]:
            value = region["value"]
            assert (region["type"], region["from_name"], region["to_name"]) == ("labels", "entity", "msg")
            assert value["labels"][0] in ner.label_names
            assert utf16(text[task_id], value["start"], value["end"]) == value["text"]  # Label Studio's offsets
            regions += 1
    gold = sum(len(r["spans"]) for r in ner.test)
    assert gold // 2 <= regions, (regions, gold)  # most entities pre-annotated
    emoji_task = next(t for t, s in text.items() if s.startswith("🙂"))
    # (offsets left in characters would put every region after the emoji one unit early: its
    # UTF-16 slice would not be its text)
    assert predictions[emoji_task]["result"], "the emoji task's entities are pre-annotated too"

    # A person corrects the pre-annotation of the emoji task in Label Studio (the webhook has
    # credentials): reftag stores the annotation's spans, in characters.
    [webhook] = [w for w in label_studio.call("GET", "/api/webhooks/", params={"project": project["id"]}).json()
                 if w["url"].endswith(f"/ls/{ls_id}/webhook")]
    basic = base64.b64encode(f"labelstudio:{stack.api_key}".encode()).decode()
    label_studio.call("PATCH", f"/api/webhooks/{webhook['id']}/", json={"headers": {"Authorization": f"Basic {basic}"}})
    source = ner.test[0]
    result = [{"from_name": "entity", "to_name": "msg", "type": "labels",
               "value": {"start": s["start"] + 3, "end": s["end"] + 3, "text": source["text"][s["start"]:s["end"]],
                         "labels": [s["label"]]}} for s in source["spans"]]
    label_studio.call("POST", f"/api/tasks/{emoji_task}/annotations/",
                      json={"result": result, "was_cancelled": False, "ground_truth": False})
    from sqlalchemy import create_engine
    from sqlalchemy import text as sql

    engine = create_engine(stack.database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(sql("SELECT spans FROM examples WHERE label_set_id = :id AND text = :t"),
                                     {"id": ls_id, "t": text[emoji_task]}).one()
    finally:
        engine.dispose()
    spans = json.loads(row.spans) if isinstance(row.spans, str) else row.spans
    assert spans == [{"start": s["start"] + 2, "end": s["end"] + 2, "label": s["label"]} for s in source["spans"]]
