"""A job, once accepted, finishes with every item answered exactly once, even when the worker
doing it is SIGKILLed: its chunk's lease runs out, the reconciler (beat) re-enqueues it, and
another worker does it again; results already written stay written once."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from store.adapters import adapter_checksum
from store.models import Adapter, Chunk
from tests.e2e.conftest import wait_for

N_ITEMS = 240


def test_tag_job_survives_worker_kill(tagging_under_way):
    run = tagging_under_way(N_ITEMS, "k")
    stack, doomed, job_id, items = run.stack, run.tagger, run.job_id, run.items
    doomed.kill()  # mid-chunk: its lease stays on the chunk it was tagging
    stack.start_worker("tag")

    job = stack.wait_for_job(job_id, timeout=180)
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"total": N_ITEMS, "done": N_ITEMS, "failed": 0}
    results = stack.results(job_id)
    assert [r["item_id"] for r in results] == [item["id"] for item in items]
    assert all(r["labels"] and r["error"] is None for r in results)


@pytest.mark.slow  # `make test` covers a killed worker with the tag job above
def test_train_job_survives_worker_kill(make_stack, news_en):
    stack = make_stack(REFTAG_TRAIN_LEASE_SECONDS="5", REFTAG_RECONCILE_INTERVAL="1")
    doomed = stack.start_worker("train")
    stack.start_worker("tag,predict")
    stack.start_beat()
    stack.start_web()
    label_set_id = stack.create_label_set(news_en, per_label=12)
    stack.wait_ready(doomed)
    job_id = stack.start_training(label_set_id, {"epochs": 3, "min_steps": 0})

    client, deadline = stack.client(), time.monotonic() + 120
    while not client.get(f"{stack.base_url}/v1/jobs/{job_id}").json()["detail"].get("step"):
        assert time.monotonic() < deadline, "training reported no progress"
        time.sleep(0.1)
    doomed.kill()  # mid-training: the job keeps a lease that nobody renews
    stack.start_worker("train")

    job = stack.wait_for_job(job_id, timeout=180)
    assert job["status"] == "succeeded", job
    assert job["detail"]["attempt"] >= 2 and job["adapter_version"] == 1
    adapters = client.get(f"{stack.base_url}/v1/label-sets/{label_set_id}/adapters").json()
    versions = [a["version"] for a in adapters["adapters"]]
    assert versions == [1]


N_LARGE = 5000


def progress_reaches(stack, job_id: str, share: float, timeout: float = 300) -> None:
    client, deadline = stack.client(), time.monotonic() + timeout
    while client.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=30).json()["progress"]["done"] < N_LARGE * share:
        assert time.monotonic() < deadline, f"the job did not reach {share:.0%}"
        time.sleep(0.2)


@pytest.mark.slow  # make test kills a tag worker in a 240-item job above
@pytest.mark.parametrize("new_database", ["sqlite"], indirect=True)
def test_a_5000_item_job_survives_two_worker_kills_with_an_unbroken_runs_results(make_stack, news_en):
    stack = make_stack(REFTAG_CHUNK_SIZE="128", REFTAG_CHUNK_LEASE_SECONDS="5", REFTAG_RECONCILE_INTERVAL="1")
    stack.start_worker("train,predict")
    taggers = [stack.start_worker("tag"), stack.start_worker("tag")]
    stack.start_beat()
    stack.start_web()
    label_set_id, _ = stack.create_trained_label_set(news_en, per_label=12, config={"epochs": 2, "min_steps": 0})
    for tagger in taggers:
        stack.wait_ready(tagger)
    texts = [r["text"] for r in news_en.test_rows(N_LARGE)]
    items = [{"id": f"big-{i}", "text": text} for i, text in enumerate(texts)]
    client = stack.client()

    def submit() -> str:
        submitted = client.post(f"{stack.base_url}/v1/jobs", json={"label_set_id": label_set_id, "items": items},
                                timeout=120)
        assert submitted.status_code == 202, submitted.text
        return submitted.json()["id"]

    unbroken = stack.wait_for_job(submit(), timeout=900)
    assert unbroken["status"] == "succeeded", unbroken

    broken_id = submit()
    progress_reaches(stack, broken_id, 0.3)
    taggers[0].kill()  # the other one keeps running; a replacement starts
    stack.start_worker("tag")
    progress_reaches(stack, broken_id, 0.7)
    taggers[1].kill()
    broken = stack.wait_for_job(broken_id, timeout=900)

    assert broken["status"] == "succeeded", broken
    assert broken["progress"] == {"total": N_LARGE, "done": N_LARGE, "failed": 0}  # each item counted once
    expected, got = stack.results(unbroken["id"], page_size=1000), stack.results(broken_id, page_size=1000)
    assert [r["item_id"] for r in got] == [item["id"] for item in items]  # each once, in submission order
    assert [r["labels"] for r in got] == [r["labels"] for r in expected]
    drift = max(abs(r["scores"][name] - e["scores"][name]) for r, e in zip(got, expected) for name in r["scores"])
    assert drift < 1e-4, drift
    engine = create_engine(stack.database_url)
    try:
        with Session(engine) as s:
            redone = s.scalar(select(func.sum(Chunk.attempts - 1)).where(Chunk.job_id == broken_id))
    finally:
        engine.dispose()
    assert redone >= 1  # the kills did interrupt chunks, which were done again


@pytest.mark.slow  # make test kills a process inside store_adapter in test_adapter_atomicity.py
@pytest.mark.parametrize("new_database", ["sqlite"], indirect=True)
def test_a_train_worker_killed_while_storing_its_adapter_leaves_one_whole_version(make_stack, news_en, tmp_path):
    stack = make_stack(REFTAG_TRAIN_LEASE_SECONDS="5", REFTAG_RECONCILE_INTERVAL="1")
    storing = tmp_path / "storing"
    doomed = stack.start_worker("train", REFTAG_FAILPOINT=f"store_adapter:{storing}")  # test-only pause, see store.jobs
    stack.start_worker("tag,predict")
    stack.start_beat()
    stack.start_web()
    label_set_id = stack.create_label_set(news_en, per_label=12)
    stack.wait_ready(doomed)
    job_id = stack.start_training(label_set_id, {"epochs": 2, "min_steps": 0})
    wait_for(storing.exists, 300, "the train worker inside store_adapter", doomed)
    doomed.kill()  # every row of the new version written, nothing committed

    client, base = stack.client(), stack.base_url
    assert client.get(f"{base}/v1/label-sets/{label_set_id}/adapters").json()["adapters"] == []
    killed = client.get(f"{base}/v1/jobs/{job_id}").json()
    assert killed["status"] in ("running", "queued") and killed["adapter_version"] is None, killed
    stack.start_worker("train")
    job = stack.wait_for_job(job_id, timeout=300)
    assert job["status"] == "succeeded" and job["adapter_version"] == 1, job
    assert job["detail"]["attempt"] == 2
    adapters = client.get(f"{base}/v1/label-sets/{label_set_id}/adapters").json()
    assert [(a["version"], a["active"]) for a in adapters["adapters"]] == [(1, True)]

    engine = create_engine(stack.database_url)
    try:
        with Session(engine) as s:
            row = s.scalars(select(Adapter).where(Adapter.label_set_id == label_set_id)).one()
            assert row.checksum == adapter_checksum(row.weights, row.config_json)
    finally:
        engine.dispose()
    items = [{"text": r["text"]} for r in news_en.test[:20]]
    tagged = client.post(f"{base}/v1/jobs", json={"label_set_id": label_set_id, "items": items}).json()
    assert stack.wait_for_job(tagged["id"])["progress"] == {"total": 20, "done": 20, "failed": 0}
