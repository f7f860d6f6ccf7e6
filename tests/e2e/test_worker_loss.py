"""A job, once accepted, finishes with every item answered exactly once, even when the worker
doing it is SIGKILLed: its chunk's lease runs out, the reconciler (beat) re-enqueues it, and
another worker does it again; results already written stay written once."""
from __future__ import annotations

import time

import pytest

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


@pytest.mark.slow  # `make test-slow`; `make test` covers a killed worker with the tag job above
def test_train_job_survives_worker_kill(make_stack, ag_news):
    stack = make_stack(REFTAG_TRAIN_LEASE_SECONDS="5", REFTAG_RECONCILE_INTERVAL="1")
    doomed = stack.start_worker("train")
    stack.start_worker("tag,predict")
    stack.start_beat()
    stack.start_web()
    label_set_id = stack.create_label_set(ag_news, per_label=12)
    stack.wait_ready(doomed)
    job_id = stack.start_training(label_set_id, {"epochs": 3})

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
