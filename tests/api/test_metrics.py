"""GET /metrics in-process: the numbers come from counters the database keeps as work happens
(store/metric_counters.py) and from Redis, so these tests move jobs on through the store's
functions, arrange Redis state, and read them back through the Prometheus parser.
(tests/e2e/test_metrics.py runs real jobs through the whole stack.)"""
from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from store import adapters, jobs, metric_counters
from store.models import Job, JobStatus, JobType
from store.results import ResultRow

REPO = Path(__file__).resolve().parents[2]


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


def test_train_durations_count_succeeded_train_jobs(client, tenant, make_label_set, db):
    ls = make_label_set()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with db() as session:
        session.add_all([
            Job(tenant_id=tenant.id, type="tag", status="running", label_set_id=ls["id"], total=50),
            Job(tenant_id=tenant.id, type="train", status="succeeded", label_set_id=ls["id"],
                started_at=start, finished_at=start + timedelta(seconds=42)),
            Job(tenant_id=tenant.id, type="train", status="succeeded", label_set_id=ls["id"],
                started_at=start, finished_at=start + timedelta(seconds=400)),
            Job(tenant_id=tenant.id, type="train", status="failed", label_set_id=ls["id"],
                started_at=start, finished_at=start + timedelta(seconds=5)),
        ])
    metrics = scrape(client)
    assert metrics[("reftag_jobs", (("status", "running"), ("type", "tag")))] == 1
    assert metrics[("reftag_jobs", (("status", "succeeded"), ("type", "train")))] == 2
    assert metrics[("reftag_train_duration_seconds_count", ())] == 2  # succeeded ones only
    assert metrics[("reftag_train_duration_seconds_sum", ())] == 442
    assert metrics[("reftag_train_duration_seconds_bucket", (("le", "30.0"),))] == 0
    assert metrics[("reftag_train_duration_seconds_bucket", (("le", "60.0"),))] == 1
    assert metrics[("reftag_train_duration_seconds_bucket", (("le", "600.0"),))] == 2


def rows_of(chunk: jobs.ChunkWork, failing: int = 0) -> list[ResultRow]:
    """A worker's results for a chunk; the first `failing` items failed."""
    return [ResultRow(p, i, [] if n < failing else ["billing"], {"billing": 0.9}, False, chunk.adapter_version,
                      "boom" if n < failing else None)
            for n, (p, i) in enumerate(zip(chunk.positions, chunk.item_ids))]


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine runs meanwhile."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def test_job_and_item_counts_follow_the_work_and_a_scrape_reads_no_job_rows(
        make_app, auth, tenant, make_label_set, add_adapter, db, clean_redis):
    """Jobs through their lives by the functions the API and the workers call — tag chunks
    written, failed and redone, a job cancelled, a train job leased and stored, another failed —
    then one scrape: the numbers equal an aggregate over the jobs table, which the scrape itself
    never reads."""
    client = make_app(chunk_size=4).test_client()
    ls = make_label_set()
    add_adapter(ls["id"])
    tag = client.post("/v1/jobs", headers=auth, json={"label_set_id": ls["id"],
                                                      "items": [{"text": f"text {i}"} for i in range(10)]}).get_json()
    for index, failing in ((0, 0), (2, 1)):
        chunk = jobs.claim_chunk(tag["id"], index)
        jobs.write_chunk_results(tag["id"], index, rows_of(chunk, failing))
        jobs.write_chunk_results(tag["id"], index, rows_of(chunk, failing))  # redelivered: counted once
    jobs.claim_chunk(tag["id"], 1)
    jobs.fail_chunk(tag["id"], 1, "adapter missing")
    cancelled = client.post("/v1/jobs", headers=auth, json={"label_set_id": ls["id"], "items": [{"text": "x"}]})
    client.post(f"/v1/jobs/{cancelled.get_json()['id']}/cancel", headers=auth)
    client.post(f"/v1/label-sets/{ls['id']}/examples", headers=auth, json={"examples": [
        {"text": f"{label} {i}", "label": label} for label in ("billing", "delivery", "other") for i in range(4)]})
    trained = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth).get_json()
    assert jobs.lease_train_job(trained["id"]) is not None
    jobs.complete_train_job(trained["id"], b"w", "{}", {"macro_f1": 0.9}, 1, adapters.first_version("macro_f1", None))
    failed = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth).get_json()
    jobs.fail_train_job(failed["id"], "bad_config", "no")

    with statements() as seen:
        metrics = scrape(client)
    assert not [s for s in seen if re.search(r"\bjobs\b", s)], seen
    with db() as session:
        truth = {(t, s): n for t, s, n in session.execute(select(Job.type, Job.status, func.count())
                                                          .group_by(Job.type, Job.status))}
        done, failures = session.execute(select(func.sum(Job.done), func.sum(Job.failed))).one()
    assert truth == {("tag", "succeeded"): 1, ("tag", "cancelled"): 1, ("train", "succeeded"): 1,
                     ("train", "failed"): 1}
    for job_type in JobType:
        for status in JobStatus:
            gauge = metrics[("reftag_jobs", (("status", status), ("type", job_type)))]
            assert gauge == truth.get((job_type, status), 0), (job_type, status)
    assert (done, failures) == (5, 5)  # chunk 1: 4 failed; chunk 2: 1 of 2 failed
    assert metrics[("reftag_items_tagged_total", (("outcome", "ok"),))] == 5
    assert metrics[("reftag_items_tagged_total", (("outcome", "failed"),))] == 5
    assert metrics[("reftag_train_duration_seconds_count", ())] == 1


def test_items_tagged_never_goes_down_when_a_job_is_withdrawn(make_app, auth, make_label_set, add_adapter, db):
    client = make_app(chunk_size=4).test_client()
    ls = make_label_set()
    add_adapter(ls["id"])
    tag = client.post("/v1/jobs", headers=auth, json={"label_set_id": ls["id"],
                                                      "items": [{"text": f"text {i}"} for i in range(6)]}).get_json()
    chunk = jobs.claim_chunk(tag["id"], 0)
    jobs.write_chunk_results(tag["id"], 0, rows_of(chunk))
    before = scrape(client)
    with db() as session:
        jobs.delete_job(session, tag["id"])  # as the API withdraws a job it could not enqueue
    after = scrape(client)
    ok = ("reftag_items_tagged_total", (("outcome", "ok"),))
    assert before[ok] == after[ok] == 4
    running = ("reftag_jobs", (("status", "running"), ("type", "tag")))
    assert (before[running], after[running]) == (1, 0)


def test_an_upgraded_database_keeps_its_numbers(tmp_path):
    """The migration that brings the counters counts the jobs already stored."""
    from alembic import command

    from store.migrate import alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "3f6b2a9d1c47")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO tenants (id, name, created_at) VALUES ('tn_1', 'a', '2026-01-01')"))
        connection.execute(text("INSERT INTO label_sets (id, tenant_id, name, multi_label, config, created_at, "
                                "base_model) "
                                "VALUES ('ls_1', 'tn_1', 's', 0, '{}', '2026-01-01', 'auto')"))
        for n, (job_type, status, done, failed, seconds) in enumerate([
                ("tag", "succeeded", 9, 1, 0), ("tag", "running", 20, 0, 0), ("train", "succeeded", 0, 0, 42),
                ("train", "queued", 0, 0, 0)]):
            connection.execute(text(
                "INSERT INTO jobs (id, tenant_id, type, status, label_set_id, total, done, failed, config, detail, "
                "warnings, attempts, created_at, started_at, finished_at) VALUES (:id, 'tn_1', :type, :status, "
                "'ls_1', 0, :done, :failed, '{}', '{}', '[]', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00', "
                ":finished)"), {"id": f"job_{n}", "type": job_type, "status": status, "done": done, "failed": failed,
                                "finished": f"2026-01-01 00:00:{seconds:02d}"})
    upgrade(url)
    with Session(engine) as session:
        counts = metric_counters.read(session)
    engine.dispose()
    assert counts.jobs[("tag", "succeeded")] == counts.jobs[("tag", "running")] == 1
    assert counts.jobs[("train", "succeeded")] == counts.jobs[("train", "queued")] == 1
    assert counts.items == {"ok": 29, "failed": 1}
    assert counts.train_seconds == 42 and dict(counts.train_buckets)[60.0] == 1


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



def bulk_job_changes(path: Path) -> list[int]:
    """Lines of statements that delete jobs, or set their status, in bulk: `delete(Job)`, or
    `update(Job)` with a `status=` (or `"status":`) value."""
    source = path.read_text(encoding="utf-8")
    found = []
    for statement in ast.walk(ast.parse(source)):
        if not isinstance(statement, (ast.Expr, ast.Assign, ast.AnnAssign, ast.Return)):
            continue
        for call in ast.walk(statement):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.args
                    and isinstance(call.args[0], ast.Name) and call.args[0].id == "Job"):
                continue
            segment = ast.get_source_segment(source, statement) or ""
            if call.func.id == "delete" or (call.func.id == "update" and SETS_STATUS.search(segment)):
                found.append(statement.lineno)
    return found


SETS_STATUS = re.compile(r"\bstatus\s*=(?!=)|[\"']status[\"']\s*:")


def test_jobs_change_status_only_where_the_counters_see_it():
    """The job counters follow jobs through the ORM (store/metric_counters.py): a bulk
    `update(Job).values(status=...)` or `delete(Job)` would change jobs behind their back."""
    offenders = {str(path.relative_to(REPO)): lines for folder in ("store", "workers", "api")
                 for path in sorted((REPO / folder).rglob("*.py")) if (lines := bulk_job_changes(path))}
    assert offenders == {}


def test_the_guard_sees_a_bulk_job_change(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("s.execute(update(Job).where(Job.status == 'x').values(lease_expires_at=None))\n"
                      "s.execute(update(Job).where(Job.id == i).values(status=JobStatus.FAILED))\n"
                      "n = s.execute(update(Job).values(**{'status': 'failed'})).rowcount\n"
                      "s.execute(delete(Job).where(Job.id == i))\n")
    assert bulk_job_changes(sample) == [2, 3, 4]
