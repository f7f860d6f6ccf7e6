"""One tenant's big work does not starve the others, on the real stack: tag chunks are served
tenant by tenant (then job by job), not in submission order, and a Label Studio project's
large /predict runs on the `tag` queue, leaving `/v1/predict` free."""
from __future__ import annotations

import subprocess
import threading
import time

import pytest
import requests

from tests.e2e.conftest import BIN, REPO, wait_for
from tests.e2e.test_label_studio import label_config

BIG_CHUNKS, CHUNK_SIZE = 40, 10


def tenant_client(stack, name: str) -> requests.Session:
    """A new tenant's key (as an operator makes one) in a client."""
    def flask(*args: str) -> str:
        return subprocess.run([str(BIN / "flask"), "--app", "api", "reftag", *args], cwd=REPO, env=stack.env,
                              check=True, capture_output=True, text=True).stdout.strip()

    flask("create-tenant", name)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {flask('create-key', '--tenant', name)}"
    return session


@pytest.mark.slow
def test_a_small_job_submitted_after_another_tenants_40_chunk_job_finishes_before_a_quarter_of_it(make_stack,
                                                                                                 news_en):
    stack = make_stack(REFTAG_CHUNK_SIZE=str(CHUNK_SIZE))
    stack.start_worker("train,predict")
    tagger = stack.start_worker("tag")
    stack.start_web()
    big_tenant, small_tenant = stack.client(), tenant_client(stack, "small")
    big_set, _ = stack.create_trained_label_set(news_en, per_label=8, config={"epochs": 1, "min_steps": 0})
    small_set = small_tenant.post(f"{stack.base_url}/v1/label-sets", json={
        "name": "small", "labels": [{"name": n} for n in news_en.label_names]}).json()["id"]
    examples = [{"text": r["text"], "label": r["label"]} for r in news_en.balanced_train(8)]
    small_tenant.post(f"{stack.base_url}/v1/label-sets/{small_set}/examples", json={"examples": examples})
    trained = small_tenant.post(f"{stack.base_url}/v1/label-sets/{small_set}/train",
                                json={"config": {"epochs": 1, "min_steps": 0}}).json()["id"]
    stack.wait_ready(tagger)
    wait_for(lambda: small_tenant.get(f"{stack.base_url}/v1/jobs/{trained}").json()["status"] == "succeeded", 300,
             "the small tenant's adapter")

    rows = news_en.test_rows(BIG_CHUNKS * CHUNK_SIZE)
    big = big_tenant.post(f"{stack.base_url}/v1/jobs", json={
        "label_set_id": big_set, "items": [{"text": r["text"]} for r in rows]}).json()["id"]
    small = small_tenant.post(f"{stack.base_url}/v1/jobs", json={
        "label_set_id": small_set, "items": [{"text": r["text"]} for r in rows[:10]]}).json()["id"]

    wait_for(lambda: small_tenant.get(f"{stack.base_url}/v1/jobs/{small}").json()["status"] == "succeeded", 120,
             "the small job")
    progress = big_tenant.get(f"{stack.base_url}/v1/jobs/{big}").json()["progress"]
    assert progress["done"] < progress["total"] / 4, progress


N_TASKS = 5000


@pytest.mark.slow
@pytest.mark.parametrize("new_database", ["sqlite"], indirect=True)
def test_predict_answers_while_label_studio_asks_for_5000_predictions(make_stack, news_en):
    stack = make_stack()
    stack.start_worker("train,predict")
    tagger = stack.start_worker("tag")
    stack.start_web()
    label_set_id, _ = stack.create_trained_label_set(news_en, per_label=8, config={"epochs": 1, "min_steps": 0})
    stack.wait_ready(tagger)
    client, texts = stack.client(), [r["text"] for r in news_en.test_rows(N_TASKS)]
    tasks = [{"id": 1 + i, "data": {"headline": text}} for i, text in enumerate(texts)]
    body = {"tasks": tasks, "project": "7.1714641164", "label_config": label_config(news_en.label_names)}
    asked: list[requests.Response] = []
    label_studio = threading.Thread(daemon=True, target=lambda: asked.append(requests.post(
        f"{stack.base_url}/ls/{label_set_id}/predict", json=body, auth=("label-studio", stack.api_key), timeout=600)))
    label_studio.start()

    def tagging() -> bool:
        jobs = client.get(f"{stack.base_url}/v1/jobs", params={"type": "tag"}).json()["jobs"]
        return bool(jobs) and 0 < jobs[0]["progress"]["done"] < N_TASKS / 2
    wait_for(tagging, 120, "Label Studio's predictions being tagged")

    started = time.monotonic()
    answer = client.post(f"{stack.base_url}/v1/predict", timeout=30,
                         json={"label_set_id": label_set_id, "items": [{"text": texts[0]}, {"text": texts[1]}]})
    assert answer.status_code == 200, answer.text
    assert time.monotonic() - started < 10
    [job] = client.get(f"{stack.base_url}/v1/jobs", params={"type": "tag"}).json()["jobs"]
    assert job["status"] == "running" and job["detail"]["made_by"] == "label_studio_predict"
    client.post(f"{stack.base_url}/v1/jobs/{job['id']}/cancel")  # Label Studio's request ends (502) at once
    label_studio.join(30)
    assert asked[0].status_code == 502
