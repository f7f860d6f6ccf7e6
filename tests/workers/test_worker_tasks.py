"""Task bodies against a real database and a real Redis; the model is replaced only where a
test needs it to fail."""
from __future__ import annotations

import pytest
from celery.exceptions import Retry

from store import adapters, jobs
from store.db import session_scope
from store.models import Chunk, Job
from tests.workers.conftest import run_as_worker
from workers import model_cache, tasks


def test_a_chunk_that_hits_an_error_is_released_and_sent_again(rows, clean_redis, monkeypatch):
    job_id = rows.tag_job(rows.label_set(), n_items=4, chunk_size=4)
    monkeypatch.setattr(adapters, "adapter_ref", lambda *a, **k: adapters.AdapterRef("ls", 1, "0" * 64))

    def out_of_memory(ref):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(model_cache, "adapter", out_of_memory)
    with pytest.raises(Retry) as retry:
        run_as_worker(tasks.tag_chunk)
    assert "out of memory" in str(retry.value.exc) and retry.value.when == tasks.RETRY_DELAY_SECONDS

    with session_scope() as s:
        chunk = s.get(Chunk, (job_id, 0))
        assert (chunk.status, chunk.attempts) == ("pending", 1) and "out of memory" in chunk.error
    assert clean_redis.queued_tasks("tag") == [{"task": "reftag.tag_chunk", "args": []}]  # a token


def test_a_chunk_without_its_adapter_fails_its_items_at_once(rows, clean_redis):
    job_id = rows.tag_job(rows.label_set(), n_items=3, chunk_size=4, adapter_version=7)
    assert tasks.tag_chunk() == 0
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert (job.status, job.failed) == ("failed", 3)
        assert "no version 7" in s.get(Chunk, (job_id, 0)).error


def test_reconcile_sends_what_it_finds(rows, clean_redis):
    job_id = rows.tag_job(rows.label_set(), n_items=4, chunk_size=4)
    jobs.claim_next_chunk()
    jobs.release_chunk(job_id, 0, "OperationalError: database is locked")
    assert tasks.reconcile() == {"chunks": 1, "train_jobs": 0, "loop_jobs": 0}
    assert clean_redis.queued_tasks("tag") == [{"task": "reftag.tag_chunk", "args": []}]  # a token
