"""Redis killed and restarted without persistence mid-job: every queued message is gone, yet
the job completes, because the database still knows which chunks are left and the reconciler
enqueues them again once the workers are idle."""
from __future__ import annotations

import time

N_ITEMS = 240


def test_tag_job_survives_redis_restart(make_stack, ag_news):
    stack = make_stack(REFTAG_CHUNK_SIZE="24", REFTAG_CHUNK_LEASE_SECONDS="3", REFTAG_RECONCILE_INTERVAL="1")
    stack.start_worker("train,predict")
    tagger = stack.start_worker("tag")
    stack.start_beat()
    stack.start_web()
    label_set_id, _ = stack.create_trained_label_set(ag_news, per_label=12, config={"epochs": 2})
    stack.wait_ready(tagger)

    items = [{"id": f"r-{i}", "text": r["text"]} for i, r in enumerate(ag_news.test[:N_ITEMS])]
    client = stack.client()
    submitted = client.post(f"{stack.base_url}/v1/jobs", json={"label_set_id": label_set_id, "items": items})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]

    deadline = time.monotonic() + 120
    while client.get(f"{stack.base_url}/v1/jobs/{job_id}").json()["progress"]["done"] < N_ITEMS * 0.3:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.1)
    stack.redis.restart()  # an empty Redis on the same port: the job's queued chunks are gone
    assert stack.redis.process.alive()
    assert client.get(f"{stack.base_url}/v1/jobs/{job_id}").status_code == 200  # reads need no broker

    job = stack.wait_for_job(job_id, timeout=180)
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"total": N_ITEMS, "done": N_ITEMS, "failed": 0}
    assert [r["item_id"] for r in stack.results(job_id)] == [item["id"] for item in items]
