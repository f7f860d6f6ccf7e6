"""Which chunk a `tag_chunk` token tags (tenants take turns, then each tenant's jobs), the chunk
lease's heartbeat, and the per-tenant limit on queued items — against a real SQLite database;
the quota through the API."""
from __future__ import annotations

import time
from types import SimpleNamespace

from sqlalchemy import update

from store import adapters, jobs, results
from store.db import session_scope
from store.models import Chunk, Job, JobItem, LabelSet
from tests.workers.conftest import run_as_worker
from workers import model_cache, tasks
from workers.train_lease import Heartbeat


def tag_next() -> tuple[str, int]:
    """What a worker does with one token, the model left out: claim, write; (job, chunk) it tagged."""
    chunk = jobs.claim_next_chunk()
    assert chunk is not None, "no chunk was waiting"
    jobs.write_chunk_results(chunk.job_id, chunk.index, [
        results.ResultRow(p, i, ["World"], {"World": 1.0}, False, chunk.adapter_version)
        for p, i in zip(chunk.positions, chunk.item_ids)])
    return chunk.job_id, chunk.index


def second_label_set(rows, label_set_id: str) -> str:
    """Another label set of the same tenant."""
    with session_scope() as s:
        tenant_id = s.get(LabelSet, label_set_id).tenant_id
        other = LabelSet(tenant_id=tenant_id, name="other")
        s.add(other)
        s.flush()
        return other.id


def test_tenants_take_turns_then_each_tenants_jobs_whatever_the_submission_order(rows):
    acme = rows.label_set()
    a1 = rows.tag_job(acme, n_items=8, chunk_size=2)  # 4 chunks
    a2 = rows.tag_job(second_label_set(rows, acme), n_items=4, chunk_size=2)  # acme's second job
    b1 = rows.tag_job(rows.label_set(), n_items=4, chunk_size=2)  # another tenant, submitted last

    order = [tag_next() for _ in range(8)]

    # Everyone unserved: the oldest job first. Then the tenant served least recently, and within
    # a tenant the job served least recently.
    assert order == [(a1, 0), (b1, 0), (a2, 0), (b1, 1), (a1, 1), (a2, 1), (a1, 2), (a1, 3)]
    assert jobs.claim_next_chunk() is None


def test_a_tenant_that_sends_many_small_jobs_takes_turns_with_one_big_job(rows):
    big = rows.tag_job(rows.label_set(), n_items=8, chunk_size=2)
    greedy = rows.label_set()
    small = [rows.tag_job(greedy, n_items=2, chunk_size=2) for _ in range(3)]

    order = [tag_next() for _ in range(7)]

    # Each small job is new, but its tenant was served: the big job gets every other chunk.
    assert order == [(big, 0), (small[0], 0), (big, 1), (small[1], 0), (big, 2), (small[2], 0), (big, 3)]
    assert jobs.claim_next_chunk() is None


def test_a_token_takes_over_a_chunk_whose_lease_ran_out_and_skips_cancelled_and_finished_jobs(rows):
    label_set_id = rows.label_set()
    cancelled = rows.tag_job(label_set_id, n_items=2, chunk_size=2, status="cancelled")
    job_id = rows.tag_job(label_set_id, n_items=2, chunk_size=2)
    held = jobs.claim_next_chunk()
    assert (held.job_id, held.index, held.attempt) == (job_id, 0, 1)
    assert jobs.claim_next_chunk() is None  # held on a live lease; the cancelled job is skipped

    with session_scope() as s:  # its worker died: nobody renews the lease
        s.get(Chunk, (job_id, 0)).lease_expires_at = jobs.utcnow()
    taken = jobs.claim_next_chunk()
    assert (taken.job_id, taken.index, taken.attempt) == (job_id, 0, 2)
    with session_scope() as s:
        assert s.get(Chunk, (cancelled, 0)).attempts == 0


def test_a_heartbeat_keeps_a_long_chunks_lease_and_a_dead_workers_lease_runs_out(rows, monkeypatch):
    # A lease of 3 s beaten every 0.1 s: only a thread starved for ~3 s (a loaded CI machine)
    # could miss it, while the wait below still outlasts a lease length.
    monkeypatch.setenv("REFTAG_CHUNK_LEASE_SECONDS", "3")
    label_set_id = rows.label_set()
    alive = rows.tag_job(label_set_id, n_items=2, chunk_size=2)
    dead = rows.tag_job(label_set_id, n_items=2, chunk_size=2)
    first, second = jobs.claim_next_chunk(), jobs.claim_next_chunk()
    assert {first.job_id, second.job_id} == {alive, dead}
    beating = first if first.job_id == alive else second

    with Heartbeat.chunk(beating.job_id, beating.index, beating.attempt, every=0.1) as heartbeat:
        time.sleep(4)  # 1.3 lease lengths
        taken = jobs.claim_next_chunk()
        assert (taken.job_id, taken.attempt) == (dead, 2)  # the silent one was taken over
        assert jobs.claim_next_chunk() is None  # the beating one was not
        assert jobs.reconcile().chunks == []
    assert not heartbeat.lost

    superseded = Heartbeat.chunk(dead, 0, 1, every=0.05)  # the dead worker's first attempt, waking up
    with superseded:
        deadline = time.monotonic() + 10
        while not superseded.lost and time.monotonic() < deadline:  # its first beat finds the lease gone
            time.sleep(0.05)
    assert superseded.lost


def test_the_tag_task_keeps_its_chunks_lease_while_the_model_runs_longer_than_a_lease(rows, clean_redis,
                                                                                        monkeypatch):
    monkeypatch.setenv("REFTAG_CHUNK_LEASE_SECONDS", "2")  # beaten every 0.5 s
    job_id = rows.tag_job(rows.label_set(), n_items=2, chunk_size=2)
    seen = {}

    class SlowModel:
        def predict(self, adapter, texts, review_threshold=None):
            time.sleep(3)  # 1.5 lease lengths
            seen["claimable meanwhile"] = jobs.claim_next_chunk()
            return [SimpleNamespace(labels=["World"], scores={"World": 1.0}, needs_review=False, confidence=1.0,
                                    margin=1.0) for _ in texts]

    monkeypatch.setattr(adapters, "adapter_ref", lambda *a, **k: adapters.AdapterRef("ls", 1, "0" * 64))
    monkeypatch.setattr(model_cache, "adapter", lambda ref: SimpleNamespace(kind="classification"))  # a loaded adapter
    monkeypatch.setattr(model_cache, "tagger_for", lambda adapter: SlowModel())

    assert run_as_worker(tasks.tag_chunk) == 2
    assert seen["claimable meanwhile"] is None
    with session_scope() as s:
        chunk = s.get(Chunk, (job_id, 0))
        assert (chunk.status, chunk.attempts) == ("done", 1)


# --- the per-tenant limit on queued items ----------------------------------------------------------


def submit(client, tenant, label_set_id: str, n: int):
    return client.post("/v1/jobs", headers=tenant.headers,
                       json={"label_set_id": label_set_id, "items": [{"text": f"text {i}"} for i in range(n)]})


def test_a_job_past_the_tenants_queued_items_limit_is_refused_with_429_and_nothing_is_stored(
        make_app, make_tenant, add_adapter, count_rows, clean_redis):
    client = make_app(max_queued_items_per_tenant=25).test_client()
    acme, other = make_tenant("acme"), make_tenant("other")
    label_sets = {}
    for tenant in (acme, other):
        made = client.post("/v1/label-sets", headers=tenant.headers,
                           json={"name": "topics", "labels": [{"name": "a"}, {"name": "b"}]}).get_json()
        add_adapter(made["id"])
        label_sets[tenant.name] = made["id"]
    first = submit(client, acme, label_sets["acme"], 20)
    assert first.status_code == 202

    refused = submit(client, acme, label_sets["acme"], 10)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    error = refused.get_json()["error"]
    assert error["code"] == "too_many_queued_items"
    assert "limit of 25" in error["message"] and "REFTAG_MAX_QUEUED_ITEMS_PER_TENANT" in error["message"]
    assert error["details"] == [{"queued": 20, "adding": 10, "limit": 25}]
    assert count_rows(Job) == 1 and count_rows(JobItem) == 20 and clean_redis.queue_length("tag") == 1

    assert submit(client, other, label_sets["other"], 20).status_code == 202  # the limit is per tenant
    assert submit(client, acme, label_sets["acme"], 5).status_code == 202  # up to the limit
    assert client.post(f"/v1/jobs/{first.get_json()['id']}/cancel", headers=acme.headers).status_code == 202
    assert submit(client, acme, label_sets["acme"], 10).status_code == 202  # a cancelled job holds no room

    assert submit(client, acme, label_sets["acme"], 25).status_code == 429
    with session_scope() as s:  # every item tagged, the jobs not closed yet: tagged items hold no room
        s.execute(update(Job).where(Job.tenant_id == acme.id).values(done=Job.total))
    assert submit(client, acme, label_sets["acme"], 25).status_code == 202
