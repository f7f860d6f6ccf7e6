"""Operating reftag, checked on the running stack: a train job and two tag jobs go through it,
then `GET /metrics` (parsed as Prometheus text) must have moved by exactly that work, and the
worker's log file must name each job on its lines."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

TAG_SIZES = (30, 20)


def scrape(stack) -> dict[tuple[str, tuple], float]:
    response = requests.get(f"{stack.base_url}/metrics", timeout=10)  # no key: public by default
    assert response.status_code == 200, response.text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


@dataclass
class Run:
    before: dict
    after: dict
    label_set_id: str
    train_job: dict
    tag_jobs: list[dict]

    def change(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return self.after[key] - self.before.get(key, 0.0)


@pytest.fixture(scope="module")
def run(stack, news_en) -> Run:
    stack.wait_idle()  # work left in flight by earlier tests on this shared stack would count here
    before = scrape(stack)
    # Its own seed: other tests on this stack train the same rows with the same config, and an
    # adapter with the same bytes (same checksum) would already sit in a worker's cache.
    label_set_id, train_job = stack.create_trained_label_set(
        news_en, per_label=8, config={"epochs": 1, "min_steps": 0, "seed": 4242})
    tag_jobs, start = [], 0
    for size in TAG_SIZES:
        rows = news_en.test_rows(start + size)[start:]
        items = [{"id": f"ops-{start + i}", "text": r["text"]} for i, r in enumerate(rows)]
        start += size
        submitted = stack.client().post(f"{stack.base_url}/v1/jobs",
                                        json={"label_set_id": label_set_id, "items": items})
        assert submitted.status_code == 202, submitted.text
        job = stack.wait_for_job(submitted.json()["id"])
        assert job["status"] == "succeeded", job
        tag_jobs.append(job)
    return Run(before, scrape(stack), label_set_id, train_job, tag_jobs)


def seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


@pytest.mark.parametrize("new_database", ["sqlite"], indirect=True)
def test_metrics_move_by_the_work_done(run):
    assert run.change("reftag_jobs", type="train", status="succeeded") == 1
    assert run.change("reftag_jobs", type="tag", status="succeeded") == len(TAG_SIZES)
    assert run.after[("reftag_jobs", (("status", "running"), ("type", "tag")))] == 0
    assert run.change("reftag_items_tagged_total", outcome="ok") == sum(TAG_SIZES)
    assert run.change("reftag_items_tagged_total", outcome="failed") == 0

    assert run.change("reftag_train_duration_seconds_count") == 1
    took = seconds(run.train_job["started_at"], run.train_job["finished_at"])
    assert abs(run.change("reftag_train_duration_seconds_sum") - took) < 0.01

    # Each tag job is one chunk (fewer items than REFTAG_CHUNK_SIZE): timed once, and its adapter
    # is loaded once (a miss), then found in the worker's cache (a hit).
    assert run.change("reftag_tag_latency_seconds_count", task="tag_chunk") == len(TAG_SIZES)
    assert run.change("reftag_tag_latency_seconds_sum", task="tag_chunk") > 0
    assert run.change("reftag_worker_items_tagged_total", task="tag_chunk") == sum(TAG_SIZES)
    assert run.change("reftag_adapter_cache_total", result="miss") == 1
    assert run.change("reftag_adapter_cache_total", result="hit") == 1

    assert run.after[("reftag_redis_up", ())] == 1
    assert all(run.after[("reftag_queue_depth", (("queue", q),))] == 0 for q in ("train", "tag", "predict"))


@pytest.mark.parametrize("new_database", ["sqlite"], indirect=True)
def test_the_worker_log_is_json_lines_naming_each_job(run, stack):
    if os.environ.get("LOG_FORMAT", "json") != "json":  # the stack inherits this shell's setting
        pytest.skip(f"LOG_FORMAT={os.environ['LOG_FORMAT']} in the environment: the workers write text")
    worker_lines = stack.workers[0].log_path.read_text(errors="replace").splitlines()
    job_ids = [run.train_job["id"]] + [job["id"] for job in run.tag_jobs]
    about_jobs = [line for line in worker_lines if any(job_id in line for job_id in job_ids)]
    entries = [json.loads(line) for line in about_jobs]  # every such line is one JSON object
    for job_id in job_ids:
        mine = [entry for entry in entries if entry.get("job_id") == job_id]
        # A train message names its job, so Celery's "received" line does; a tag message is a
        # token ("tag the next chunk"), whose job is known once the claim has picked a chunk.
        if job_id == run.train_job["id"]:
            assert any("received" in entry["message"] for entry in mine), (job_id, entries)
        [finished] = [entry for entry in mine if "succeeded" in entry["message"]]
        assert finished["label_set_id"] == run.label_set_id and finished["tenant"].startswith("tn_")
        assert finished["service"] == "worker" and finished["level"] == "info"
    tag_lines = [entry for entry in entries
                 if entry.get("job_id") != run.train_job["id"] and "succeeded" in entry["message"]]
    assert [entry["chunk"] for entry in tag_lines] == [0] * len(TAG_SIZES)

    web_lines = stack.web.log_path.read_text(errors="replace").splitlines()
    started = [json.loads(line) for line in web_lines if "Starting gunicorn" in line]
    assert started and started[0]["service"] == "web" and started[0]["logger"] == "gunicorn.error"
