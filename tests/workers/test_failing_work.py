"""Work that cannot succeed ends, with its reason, instead of looping: the `tag_chunk` task on a
real database and a real Redis, every message it sends itself delivered back to it as a
worker would, until none is left. Only the model is replaced, where a test needs it to fail."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from celery.exceptions import Retry
from sqlalchemy import select

from store import adapters, jobs
from store.db import session_scope
from store.models import Adapter, Chunk, Job, Result
from tests.workers.conftest import run_as_worker
from workers import model_cache, tasks

# What a worker decides for a label set's first version.
FIRST = adapters.first_version("macro_f1", None)


def deliver_until_quiet(redis, first: list, limit: int = 20) -> int:
    """Run tag_chunk on `first`, then on every message it (re)sent, until the queue is empty;
    returns how many times it ran."""
    pending, runs = [first], 0
    while pending:
        runs += 1
        assert runs <= limit, "the chunk is being retried forever"
        try:
            run_as_worker(tasks.tag_chunk, *pending.pop(0))
        except Retry:
            pass  # the worker logs it; Task.retry has sent the message again
        pending += [message["args"] for message in redis.queued_tasks("tag")]
        redis.client().delete("tag")
    return runs


def failed_results(job_id: str) -> list[Result]:
    with session_scope() as s:
        return s.scalars(select(Result).where(Result.job_id == job_id).order_by(Result.position)).all()


def test_a_chunk_that_fails_every_time_fails_its_items_with_the_error_after_max_attempts(rows, clean_redis,
                                                                                         monkeypatch):
    monkeypatch.setenv("REFTAG_MAX_ATTEMPTS", "3")
    job_id = rows.tag_job(rows.label_set(), n_items=6, chunk_size=4)

    class OutOfMemoryOnChunk0:
        def predict(self, adapter, texts, review_threshold=None):
            if "text 0" in texts:
                raise RuntimeError("CUDA out of memory")
            return [SimpleNamespace(labels=["World"], scores={"World": 0.9, "Sports": 0.1}, needs_review=False,
                                    confidence=0.9, margin=0.8)
                    for _ in texts]

    monkeypatch.setattr(adapters, "adapter_ref", lambda *a, **k: adapters.AdapterRef("ls", 1, "0" * 64))
    monkeypatch.setattr(model_cache, "adapter", lambda ref: SimpleNamespace(kind="classification"))  # a loaded adapter
    monkeypatch.setattr(model_cache, "tagger_for", lambda adapter: OutOfMemoryOnChunk0())

    # Chunk 0 three times, then the claim that gives up on it and tags chunk 1.
    assert deliver_until_quiet(clean_redis, []) == 4

    results = failed_results(job_id)
    assert [r.position for r in results] == [0, 1, 2, 3, 4, 5]  # each item once
    assert all(r.labels == [] and r.error == "gave up after 3 attempts: RuntimeError: CUDA out of memory"
               for r in results[:4])
    assert all(r.labels == ["World"] and r.error is None for r in results[4:])  # the other chunk is tagged
    with session_scope() as s:
        assert s.get(Chunk, (job_id, 0)).status == "failed"
        job = s.get(Job, job_id)
        assert (job.status, job.done, job.failed) == ("succeeded", 2, 4)


def test_a_train_task_stuck_past_the_stall_limit_gives_its_job_up_for_another_attempt(rows, clean_redis,
                                                                                        monkeypatch):
    # A deadlock in a library cannot be made to order: training here reports one step and then
    # sits still longer than REFTAG_TRAIN_STALL_SECONDS, as cleanlab's pool once did for good.
    import reft_core

    monkeypatch.setenv("REFTAG_TRAIN_STALL_SECONDS", "0.5")
    monkeypatch.setenv("REFTAG_TRAIN_LEASE_SECONDS", "4")  # a beat a second
    reports = []

    def stuck_training(base, texts, labels, label_names, progress=None, **_):
        progress({"step": 1, "total_steps": 10, "epoch": 1, "epochs": 1, "loss": 1.0})
        reports.append(1)
        time.sleep(5)
        progress({"step": 2, "total_steps": 10, "epoch": 1, "epochs": 1, "loss": 0.9})  # woken: stops here
        reports.append(2)
        raise AssertionError("training went on after its job was given up")

    monkeypatch.setattr(reft_core, "train", stuck_training)
    monkeypatch.setattr(model_cache, "base", lambda name=None: SimpleNamespace(name=name))
    job_id = rows.train_job(rows.label_set())

    assert run_as_worker(tasks.train_adapter, job_id) is None
    assert reports == [1]
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job.status == "queued" and "no progress for" in job.detail["last_error"]
        assert s.scalars(select(Adapter).where(Adapter.label_set_id == job.label_set_id)).all() == []
    assert jobs.lease_train_job(job_id).attempt == 2  # another attempt takes it


def test_an_adapter_whose_bytes_do_not_match_their_checksum_is_never_served(rows, clean_redis):
    label_set_id = rows.label_set()
    train_job = rows.train_job(label_set_id)
    jobs.lease_train_job(train_job)
    jobs.complete_train_job(train_job, b"weights", '{"rank": 4}', {"macro_f1": 0.9}, 1, FIRST)
    with session_scope() as s:  # a torn write or a bad disk: the bytes change, the checksum does not
        s.scalar(select(Adapter).where(Adapter.label_set_id == label_set_id)).weights = b"weightz"
    model_cache.clear()
    job_id = rows.tag_job(label_set_id, n_items=3, chunk_size=4)

    assert deliver_until_quiet(clean_redis, []) == 1  # failed at once: a retry reads the same bytes
    results = failed_results(job_id)
    assert len(results) == 3 and all("is corrupt: checksum" in r.error for r in results)
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert (job.status, job.error["code"]) == ("failed", "all_items_failed")
    with pytest.raises(model_cache.AdapterIntegrityError):
        model_cache.adapter(adapters.adapter_ref(label_set_id))
