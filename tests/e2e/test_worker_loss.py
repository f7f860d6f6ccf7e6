"""A job, once accepted, finishes with every item answered exactly once, even when the worker
doing it is SIGKILLed: its chunk's lease runs out, the reconciler (beat) re-enqueues it, and
another worker does it again; results already written stay written once."""
from __future__ import annotations

import time

N_ITEMS = 240


def test_tag_job_survives_worker_kill(make_stack, ag_news):
    # Small chunks, short leases and a fast reconciler so that recovery takes seconds.
    stack = make_stack(REFTAG_CHUNK_SIZE="24", REFTAG_CHUNK_LEASE_SECONDS="3", REFTAG_RECONCILE_INTERVAL="1")
    stack.start_worker("train,predict")  # also runs the reconciler, which routes to `predict`
    doomed = stack.start_worker("tag")
    stack.start_beat()
    stack.start_web()
    label_set_id, trained = stack.create_trained_label_set(ag_news, per_label=12, config={"epochs": 2})
    stack.wait_ready(doomed)

    items = [{"id": f"k-{i}", "text": r["text"]} for i, r in enumerate(ag_news.test[:N_ITEMS])]
    submitted = stack.client().post(f"{stack.base_url}/v1/jobs", json={"label_set_id": label_set_id, "items": items})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]

    deadline = time.monotonic() + 120
    while stack.client().get(f"{stack.base_url}/v1/jobs/{job_id}").json()["progress"]["done"] < N_ITEMS * 0.3:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.1)
    doomed.kill()  # mid-chunk: its lease stays on the chunk it was tagging
    stack.start_worker("tag")

    job = stack.wait_for_job(job_id, timeout=180)
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"total": N_ITEMS, "done": N_ITEMS, "failed": 0}
    results = stack.results(job_id)
    assert [r["item_id"] for r in results] == [item["id"] for item in items]
    assert all(r["labels"] and r["error"] is None for r in results)
