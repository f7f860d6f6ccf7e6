"""Cancelling a running job stops its chunks within seconds; what was written stays readable."""
from __future__ import annotations

import time

N_ITEMS = 960


def test_cancelled_tag_job_stops_and_keeps_its_results(make_stack, news_en):
    stack = make_stack(REFTAG_CHUNK_SIZE="24")
    stack.start_worker("train,predict")
    tagger = stack.start_worker("tag")
    stack.start_web()
    label_set_id, _ = stack.create_trained_label_set(news_en, per_label=12, config={"epochs": 2, "min_steps": 0})
    stack.wait_ready(tagger)

    client, base = stack.client(), stack.base_url
    items = [{"id": f"c-{i}", "text": r["text"]} for i, r in enumerate(news_en.test_rows(N_ITEMS))]
    job_id = client.post(f"{base}/v1/jobs", json={"label_set_id": label_set_id, "items": items}).json()["id"]
    deadline = time.monotonic() + 120
    while client.get(f"{base}/v1/jobs/{job_id}").json()["progress"]["done"] < N_ITEMS * 0.2:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.1)

    assert client.post(f"{base}/v1/jobs/{job_id}/cancel").status_code == 202
    time.sleep(3)  # the chunk in flight may still land
    settled = client.get(f"{base}/v1/jobs/{job_id}").json()
    time.sleep(3)
    job = client.get(f"{base}/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["finished_at"] is not None
    assert job["progress"]["done"] == settled["progress"]["done"] < N_ITEMS  # nothing new after it settled

    results = stack.results(job_id)
    assert len(results) == job["progress"]["done"] >= N_ITEMS * 0.2
    positions = [int(r["item_id"].split("-")[1]) for r in results]
    assert positions == sorted(set(positions))  # each once, in submission order
