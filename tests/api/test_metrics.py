"""GET /metrics in-process: the numbers come from the database and Redis at scrape time, so
these tests arrange rows and Redis state and read them back through the Prometheus parser.
(tests/e2e/test_metrics.py runs real jobs through the whole stack.)"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from store.models import Job


def scrape(client, headers=None) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain" and "version=" in response.headers["Content-Type"]
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def test_queued_work_shows_as_jobs_and_queue_depth(make_app, auth, make_label_set, add_adapter, clean_redis):
    client = make_app(chunk_size=4).test_client()
    ls = make_label_set()
    add_adapter(ls["id"])
    submitted = client.post("/v1/jobs", headers=auth,
                            json={"label_set_id": ls["id"], "items": [{"text": f"text {i}"} for i in range(10)]})
    assert submitted.status_code == 202

    metrics = scrape(client)
    assert metrics[("reftag_jobs", (("status", "queued"), ("type", "tag")))] == 1
    assert metrics[("reftag_jobs", (("status", "succeeded"), ("type", "train")))] == 0
    assert metrics[("reftag_queue_depth", (("queue", "tag"),))] == 3  # 10 items in chunks of 4
    assert metrics[("reftag_queue_depth", (("queue", "train"),))] == 0
    assert metrics[("reftag_redis_up", ())] == 1


def test_items_and_train_durations_come_from_job_rows(client, tenant, make_label_set, db):
    ls = make_label_set()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with db() as session:
        session.add_all([
            Job(tenant_id=tenant.id, type="tag", status="succeeded", label_set_id=ls["id"], total=10, done=9, failed=1),
            Job(tenant_id=tenant.id, type="tag", status="running", label_set_id=ls["id"], total=50, done=20),
            Job(tenant_id=tenant.id, type="train", status="succeeded", label_set_id=ls["id"],
                started_at=start, finished_at=start + timedelta(seconds=42)),
            Job(tenant_id=tenant.id, type="train", status="succeeded", label_set_id=ls["id"],
                started_at=start, finished_at=start + timedelta(seconds=400)),
            Job(tenant_id=tenant.id, type="train", status="failed", label_set_id=ls["id"],
                started_at=start, finished_at=start + timedelta(seconds=5)),
        ])
    metrics = scrape(client)
    assert metrics[("reftag_items_tagged_total", (("outcome", "ok"),))] == 29
    assert metrics[("reftag_items_tagged_total", (("outcome", "failed"),))] == 1
    assert metrics[("reftag_jobs", (("status", "running"), ("type", "tag")))] == 1
    assert metrics[("reftag_train_duration_seconds_count", ())] == 2  # succeeded ones only
    assert metrics[("reftag_train_duration_seconds_sum", ())] == 442
    assert metrics[("reftag_train_duration_seconds_bucket", (("le", "30.0"),))] == 0
    assert metrics[("reftag_train_duration_seconds_bucket", (("le", "60.0"),))] == 1
    assert metrics[("reftag_train_duration_seconds_bucket", (("le", "600.0"),))] == 2


def test_what_workers_record_in_redis_is_served(client, clean_redis):
    from workers import metrics as worker_metrics

    worker_metrics.count_adapter_cache(hit=False)
    for _ in range(3):
        worker_metrics.count_adapter_cache(hit=True)
    worker_metrics.observe_tag_seconds("tag_chunk", 0.3, items=256)
    worker_metrics.observe_tag_seconds("tag_chunk", 7.0, items=100)
    worker_metrics.observe_tag_seconds("predict", 0.04, items=2)

    metrics = scrape(client)
    assert metrics[("reftag_adapter_cache_total", (("result", "hit"),))] == 3
    assert metrics[("reftag_adapter_cache_total", (("result", "miss"),))] == 1
    chunk = (("task", "tag_chunk"),)
    assert metrics[("reftag_tag_latency_seconds_count", chunk)] == 2
    assert abs(metrics[("reftag_tag_latency_seconds_sum", chunk)] - 7.3) < 1e-9
    assert metrics[("reftag_tag_latency_seconds_bucket", (("le", "0.25"), *chunk))] == 0
    assert metrics[("reftag_tag_latency_seconds_bucket", (("le", "0.5"), *chunk))] == 1
    assert metrics[("reftag_tag_latency_seconds_bucket", (("le", "10.0"), *chunk))] == 2
    assert metrics[("reftag_tag_latency_seconds_bucket", (("le", "+Inf"), *chunk))] == 2
    assert metrics[("reftag_worker_items_tagged_total", chunk)] == 356
    assert metrics[("reftag_tag_latency_seconds_count", (("task", "predict"),))] == 1


def test_without_redis_the_database_metrics_are_still_served(make_app):
    client = make_app(redis_url="redis://127.0.0.1:9/0").test_client()  # nothing listens on port 9
    metrics = scrape(client)
    assert metrics[("reftag_redis_up", ())] == 0
    assert ("reftag_jobs", (("status", "queued"), ("type", "tag"))) in metrics
    assert not any(name == "reftag_queue_depth" for name, _ in metrics)


def test_a_metrics_token_is_required_when_set(make_app):
    client = make_app(metrics_token="scrape-me").test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and "REFTAG_METRICS_TOKEN" in refused.get_json()["error"]["message"]
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert scrape(client, {"Authorization": "Bearer scrape-me"})[("reftag_redis_up", ())] == 1
