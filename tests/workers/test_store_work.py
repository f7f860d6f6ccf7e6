"""store/jobs.py and store/adapters.py: leases, idempotent writes, adapters stored once, the reconciler."""
from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from service.settings import get_settings
from store import adapters, jobs, results
from store.db import session_scope
from store.models import Adapter, Chunk, Job, Result
from workers import train_lease

FIRST = adapters.first_version("macro_f1", None)


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def result_rows(chunk: jobs.ChunkWork) -> list[results.ResultRow]:
    return [
        results.ResultRow(p, i, ["World"], {"World": 0.9, "Sports": 0.1}, False, chunk.adapter_version)
        for p, i in zip(chunk.positions, chunk.item_ids)
    ]


def wait_until(condition, seconds: float) -> bool:
    """Whether `condition` came true within `seconds` (a heartbeat thread on a loaded machine may
    be late; the test waits for what it asserts rather than sleeping a guess)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def job(job_id: str) -> Job:
    with session_scope() as s:
        return s.get(Job, job_id)


def chunk_row(job_id: str, index: int) -> Chunk:
    with session_scope() as s:
        return s.get(Chunk, (job_id, index))


def count_results(job_id: str) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Result).where(Result.job_id == job_id))


# --- chunks -----------------------------------------------------------------------------------


def test_chunk_written_twice_writes_once_and_counts_once(rows):
    job_id = rows.tag_job(rows.label_set(), n_items=10, chunk_size=4)
    chunk = jobs.claim_chunk(job_id, 0)
    assert chunk.positions == [0, 1, 2, 3] and chunk.item_ids == ["item-0", "item-1", "item-2", "item-3"]

    assert jobs.write_chunk_results(job_id, 0, result_rows(chunk)) == 4
    assert jobs.write_chunk_results(job_id, 0, result_rows(chunk)) == 0

    assert count_results(job_id) == 4
    assert job(job_id).done == 4
    assert chunk_row(job_id, 0).status == "done"


def test_a_partly_written_chunk_writes_only_the_missing_rows(rows):
    job_id = rows.tag_job(rows.label_set(), n_items=4, chunk_size=4)
    chunk = jobs.claim_chunk(job_id, 0)
    assert jobs.write_chunk_results(job_id, 0, result_rows(chunk)[:2]) == 2
    assert jobs.write_chunk_results(job_id, 0, result_rows(chunk)) == 2
    assert count_results(job_id) == 4 and job(job_id).done == 4


def test_job_succeeds_when_its_last_chunk_is_written(rows):
    job_id = rows.tag_job(rows.label_set(), n_items=10, chunk_size=4)
    for index in range(3):
        assert job(job_id).status in ("queued", "running")
        chunk = jobs.claim_chunk(job_id, index)
        jobs.write_chunk_results(job_id, index, result_rows(chunk))
    finished = job(job_id)
    assert finished.status == "succeeded"
    assert (finished.done, finished.failed, finished.total) == (10, 0, 10)
    assert finished.started_at is not None and finished.finished_at is not None


def test_claim_is_a_no_op_for_a_done_chunk_a_leased_chunk_or_a_cancelled_job(rows):
    ls = rows.label_set()
    job_id = rows.tag_job(ls, n_items=8, chunk_size=4)
    chunk = jobs.claim_chunk(job_id, 0)
    assert jobs.claim_chunk(job_id, 0) is None  # another worker holds the lease
    jobs.write_chunk_results(job_id, 0, result_rows(chunk))
    assert jobs.claim_chunk(job_id, 0) is None  # done

    cancelled = rows.tag_job(ls, n_items=4, chunk_size=4, status="cancelled")
    assert jobs.claim_chunk(cancelled, 0) is None
    assert chunk_row(cancelled, 0).attempts == 0


def test_chunk_with_an_expired_lease_can_be_claimed_again(rows):
    job_id = rows.tag_job(rows.label_set(), n_items=4, chunk_size=4)
    jobs.claim_chunk(job_id, 0)
    with session_scope() as s:
        s.get(Chunk, (job_id, 0)).lease_expires_at = ago(1)
    again = jobs.claim_chunk(job_id, 0)
    assert again is not None and again.attempt == 2


def test_chunk_past_max_attempts_fails_its_items_with_the_error(rows, monkeypatch):
    monkeypatch.setenv("REFTAG_MAX_ATTEMPTS", "2")
    job_id = rows.tag_job(rows.label_set(), n_items=6, chunk_size=4)
    for _ in range(2):
        assert jobs.claim_chunk(job_id, 0) is not None
        jobs.release_chunk(job_id, 0, "RuntimeError: boom")
    assert jobs.claim_chunk(job_id, 0) is None

    failed = chunk_row(job_id, 0)
    assert failed.status == "failed" and "boom" in failed.error
    with session_scope() as s:
        results = s.scalars(select(Result).where(Result.job_id == job_id).order_by(Result.position)).all()
        assert [r.position for r in results] == [0, 1, 2, 3]
        assert all("gave up after 2 attempts" in r.error and "boom" in r.error for r in results)
    assert (job(job_id).failed, job(job_id).done) == (4, 0)

    other = jobs.claim_chunk(job_id, 1)
    jobs.write_chunk_results(job_id, 1, result_rows(other))
    finished = job(job_id)
    assert finished.status == "succeeded" and (finished.done, finished.failed) == (2, 4)


def test_a_job_whose_every_item_failed_is_failed(rows):
    job_id = rows.tag_job(rows.label_set(), n_items=3, chunk_size=4)
    jobs.claim_chunk(job_id, 0)
    assert jobs.fail_chunk(job_id, 0, "label set has no version 1") == 3
    assert job(job_id).status == "failed"
    assert job(job_id).error["code"] == "all_items_failed"


# --- train jobs and adapters ------------------------------------------------------------------


def train(rows, label_set_id=None, **fields):
    ls = label_set_id or rows.label_set(labels=("World", "Sports", "Business"))
    job_id = rows.train_job(ls, **fields)
    return ls, job_id, jobs.lease_train_job(job_id)


def test_lease_reads_examples_and_merges_config(rows):
    ls = rows.label_set(labels=("World", "Sports"), examples=2)
    job_id = rows.train_job(ls, config={"epochs": 2})
    leased = jobs.lease_train_job(job_id)
    assert leased.label_names == ["World", "Sports"]
    assert sorted(leased.labels) == ["Sports", "Sports", "World", "World"]
    assert len(leased.texts) == 4 and leased.config == {"epochs": 2} and leased.attempt == 1
    assert job(job_id).status == "running" and job(job_id).started_at is not None
    assert jobs.lease_train_job(job_id) is None  # its lease is live


def decided(promote: bool, active_version: int | None, new: float = 0.8, active: float | None = 0.8):
    """A worker's decision (workers/promotion.py scores both versions on the same rows)."""
    return adapters.Promotion(promote, "held_out", "macro_f1", new, active_version, active,
                              f"{'promoted' if promote else 'not activated'}: macro_f1 {new} vs {active}")


def test_adapter_is_stored_once_per_train_job(rows):
    ls, job_id, leased = train(rows)
    first = jobs.complete_train_job(job_id, b"weights", '{"rank": 4}', {"macro_f1": 0.8}, 100, FIRST)
    again = jobs.complete_train_job(job_id, b"other weights", '{"rank": 4}', {"macro_f1": 0.9}, 100, FIRST)
    assert first == again == adapters.StoredAdapter(version=1, is_active=True, note=None)
    with session_scope() as s:
        stored = s.scalars(select(Adapter).where(Adapter.label_set_id == ls)).all()
    assert len(stored) == 1
    assert stored[0].checksum == adapters.adapter_checksum(b"weights", '{"rank": 4}')
    done = job(job_id)
    assert done.status == "succeeded" and done.adapter_version == 1 and done.metrics["macro_f1"] == 0.8
    assert done.metrics["promotion"]["rule"] == "first" and done.metrics["promotion"]["promoted"] is True
    assert done.finished_at is not None and done.lease_expires_at is None


def test_a_version_is_activated_as_the_worker_decided_and_says_why_when_not(rows):
    ls, job1, _ = train(rows)
    assert jobs.complete_train_job(job1, b"w1", "{}", {"macro_f1": 0.80}, 1, FIRST).is_active

    _, job2, _ = train(rows, ls)
    worse = jobs.complete_train_job(job2, b"w2", "{}", {"macro_f1": 0.90}, 1, decided(False, 1, 0.70, 0.80))
    assert (worse.version, worse.is_active) == (2, False) and "not activated" in worse.note
    assert job(job2).metrics["promotion"] == {"promoted": False, "rule": "held_out", "metric": "macro_f1",
                                              "new_score": 0.70, "active_version": 1, "active_score": 0.80,
                                              "reason": worse.note}

    _, job3, _ = train(rows, ls)
    better = jobs.complete_train_job(job3, b"w3", "{}", {"macro_f1": 0.10}, 1, decided(True, 1))
    assert (better.version, better.is_active) == (3, True)
    assert adapters.adapter_ref(ls).version == 3
    with session_scope() as s:
        active = s.scalars(select(Adapter.version).where(Adapter.label_set_id == ls, Adapter.is_active)).all()
    assert active == [3]


def test_a_version_compared_with_an_active_one_that_changed_meanwhile_stays_inactive(rows):
    ls, job1, _ = train(rows)
    jobs.complete_train_job(job1, b"w1", "{}", {"macro_f1": 0.8}, 1, FIRST)
    _, job2, _ = train(rows, ls)
    _, job3, _ = train(rows, ls)
    jobs.complete_train_job(job2, b"w2", "{}", {"macro_f1": 0.8}, 1, decided(True, 1))  # v2 is active now
    late = jobs.complete_train_job(job3, b"w3", "{}", {"macro_f1": 0.9}, 1, decided(True, 1))  # compared with v1
    assert (late.version, late.is_active) == (3, False)
    assert "version 2 became active while it trained" in late.note
    assert adapters.adapter_ref(ls).version == 2
    promotion = job(job3).metrics["promotion"]
    assert (promotion["promoted"], promotion["active_changed_to"]) == (False, 2)


def test_a_cancelled_train_job_stores_nothing(rows):
    ls, job_id, _ = train(rows)
    with session_scope() as s:
        s.get(Job, job_id).status = "cancelled"
    assert jobs.complete_train_job(job_id, b"w", "{}", {"macro_f1": 1.0}, 1, FIRST) is None
    with pytest.raises(jobs.LeaseLost):
        jobs.renew_train_lease(job_id, 1)


def test_a_train_job_that_stops_reporting_progress_is_given_up_for_another_attempt(rows):
    # A task stuck for good (a deadlock) whose heartbeat thread lives on held its job "running"
    # for ever; now its silence past stall_after gives the lease up.
    ls, job_id, leased = train(rows)
    progress = train_lease.TrainProgress(job_id, leased.attempt)
    with train_lease.Heartbeat.train(job_id, leased.attempt, every=0.05, stall_after=2) as heartbeat:
        report = train_lease.LeasedReport(heartbeat, progress)
        for step in range(1, 31):  # training that reports: 3 s, longer than stall_after, kept
            report({"step": step, "total_steps": 100, "epoch": 1, "epochs": 10, "loss": 1.0})
            time.sleep(0.1)
        assert not heartbeat.stalled and job(job_id).status == "running"
        assert wait_until(lambda: heartbeat.stalled, 10)  # then nothing: stuck
        assert heartbeat.lost
    stuck = job(job_id)
    assert stuck.status == "queued" and "no progress for" in stuck.detail["last_error"]
    assert "REFTAG_TRAIN_STALL_SECONDS" in stuck.detail["last_error"]
    with pytest.raises(jobs.LeaseLost):  # the stuck attempt, should it wake, stops at its next report
        report({"step": 31, "total_steps": 100, "epoch": 1, "epochs": 10, "loss": 1.0})
    assert jobs.lease_train_job(job_id).attempt == 2  # and another attempt takes the job


def test_the_stall_watch_starts_at_the_first_progress_report(rows):
    # Caching the frozen layers of every example comes before the first step and reports nothing:
    # however long it takes, it is not a stall.
    ls, job_id, leased = train(rows)
    with train_lease.Heartbeat.train(job_id, leased.attempt, every=0.05, stall_after=0.2) as heartbeat:
        time.sleep(0.8)
        assert not heartbeat.stalled and not heartbeat.lost
    assert job(job_id).status == "running"


def test_a_paused_stall_watch_waits_for_the_next_progress_report(rows):
    # Between the new version's training and the comparison's first step (the active recipe's
    # examples cached again) nothing reports: the watch is paused there, and armed again by the
    # next report.
    ls, job_id, leased = train(rows)
    with train_lease.Heartbeat.train(job_id, leased.attempt, every=0.05, stall_after=0.3) as heartbeat:
        heartbeat.touch()
        heartbeat.pause()
        time.sleep(0.8)
        assert not heartbeat.stalled
        heartbeat.alive({"step": 1})
        assert wait_until(lambda: heartbeat.stalled, 10)
    assert job(job_id).status == "queued"


def test_train_job_past_max_attempts_fails(rows, monkeypatch):
    monkeypatch.setenv("REFTAG_MAX_ATTEMPTS", "2")
    ls, job_id, leased = train(rows)
    jobs.release_train_job(job_id, leased.attempt, "RuntimeError: out of memory")
    assert jobs.lease_train_job(job_id).attempt == 2
    jobs.release_train_job(job_id, 2, "RuntimeError: out of memory")
    assert jobs.lease_train_job(job_id) is None
    failed = job(job_id)
    assert failed.status == "failed" and failed.error["code"] == "too_many_attempts"
    assert "out of memory" in failed.error["message"] and failed.finished_at is not None


def test_a_superseded_attempt_loses_its_lease(rows):
    ls, job_id, leased = train(rows)
    with session_scope() as s:
        s.get(Job, job_id).lease_expires_at = ago(1)
    assert jobs.lease_train_job(job_id).attempt == 2
    with pytest.raises(jobs.LeaseLost):
        jobs.renew_train_lease(job_id, leased.attempt)
    jobs.renew_train_lease(job_id, 2)


def test_progress_reaches_the_job_at_most_once_a_second(rows):
    ls, job_id, leased = train(rows)
    progress = train_lease.TrainProgress(job_id, leased.attempt, interval=3600)
    progress({"step": 1, "total_steps": 3, "epoch": 1, "epochs": 1, "loss": 1.5, "eta_seconds": 2})
    progress({"step": 2, "total_steps": 3, "epoch": 1, "epochs": 1, "loss": 1.0, "eta_seconds": 1})
    detail = job(job_id).detail
    assert detail["step"] == 1 and detail["loss_history"] == [[1, 1.5]]
    progress({"step": 3, "total_steps": 3, "epoch": 1, "epochs": 1, "loss": 0.5, "eta_seconds": 0})
    detail = job(job_id).detail
    assert detail["step"] == 3 and detail["loss_history"] == [[1, 1.5], [2, 1.0], [3, 0.5]]


# --- reconcile --------------------------------------------------------------------------------


def test_reconcile_finds_expired_leases(rows):
    ls = rows.label_set()
    tag = rows.tag_job(ls, n_items=8, chunk_size=4)
    jobs.claim_chunk(tag, 0)
    jobs.claim_chunk(tag, 1)
    _, training, _ = train(rows, ls)
    assert jobs.reconcile().chunks == []  # every lease is live

    with session_scope() as s:
        s.get(Chunk, (tag, 1)).lease_expires_at = ago(1)
        s.get(Job, training).lease_expires_at = ago(1)
    found = jobs.reconcile()
    assert found.chunks == [(tag, 1)] and found.train_jobs == [training]
    assert jobs.reconcile().chunks == []  # not again until the new pick-up deadline passes

    again = jobs.claim_chunk(tag, 1)
    assert again is not None and again.attempt == 2
    assert jobs.lease_train_job(training).attempt == 2


def test_reconcile_enqueues_queued_work_that_no_worker_picked_up(rows, monkeypatch):
    ls = rows.label_set()
    fresh = rows.tag_job(ls, n_items=4, chunk_size=4)
    old = rows.tag_job(ls, n_items=4, chunk_size=4, created_at=ago(3600))
    old_train = rows.train_job(ls, created_at=ago(3600))
    rows.train_job(ls)
    found = jobs.reconcile()
    assert found.chunks == [(old, 0)] and found.train_jobs == [old_train]
    assert fresh not in [job_id for job_id, _ in found.chunks]

    later = datetime.now(UTC) + timedelta(hours=1)
    assert set(jobs.reconcile(now=later).chunks) == {(old, 0), (fresh, 0)}


def test_queued_work_waits_its_turn_while_workers_are_busy(rows, monkeypatch):
    monkeypatch.setenv("REFTAG_CHUNK_LEASE_SECONDS", "120")
    monkeypatch.setenv("REFTAG_TRAIN_LEASE_SECONDS", "60")
    ls = rows.label_set()
    busy = rows.tag_job(ls, n_items=8, chunk_size=4)
    # Waiting longer than a lease (120 s for chunks, 60 s for training), not yet BUSY_PATIENCE of them.
    waiting = rows.tag_job(ls, n_items=4, chunk_size=4, created_at=ago(150))
    jobs.claim_chunk(busy, 0)
    training = rows.train_job(ls)
    jobs.lease_train_job(training)
    queued_train = rows.train_job(ls, created_at=ago(150))
    assert jobs.reconcile() == jobs.Reconciled()  # the queues are moving: those messages are in them

    later = datetime.now(UTC) + timedelta(hours=1)  # every lease has run out
    found = jobs.reconcile(now=later)
    assert set(found.chunks) == {(busy, 0), (busy, 1), (waiting, 0)}
    assert set(found.train_jobs) == {training, queued_train}


def test_while_workers_stay_busy_lost_messages_are_resent_after_a_longer_wait(rows):
    ls = rows.label_set()
    busy = rows.tag_job(ls, n_items=4, chunk_size=4)
    jobs.claim_chunk(busy, 0)
    lease = get_settings().chunk_lease_seconds
    lost = rows.tag_job(ls, n_items=4, chunk_size=4, created_at=ago(lease * (jobs.BUSY_PATIENCE + 1)))
    assert jobs.reconcile().chunks == [(lost, 0)]


def test_reconcile_skips_cancelled_and_finished_jobs(rows):
    ls = rows.label_set()
    rows.tag_job(ls, n_items=4, chunk_size=4, created_at=ago(3600), status="cancelled")
    rows.train_job(ls, created_at=ago(3600), status="succeeded")
    found = jobs.reconcile()
    assert found.chunks == [] and found.train_jobs == []


def test_a_released_chunk_is_reconciled_at_once(rows):
    job_id = rows.tag_job(rows.label_set(), n_items=4, chunk_size=4)
    jobs.claim_chunk(job_id, 0)
    jobs.release_chunk(job_id, 0, "OperationalError: gone away")
    assert jobs.reconcile().chunks == [(job_id, 0)]
