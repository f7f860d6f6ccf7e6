"""A busy database loses no write and fails no job: two tag workers claim chunks and write
results and progress (small chunks, so they write often), while the web tier creates jobs,
stores examples and answers status polls, all at once, on SQLite (WAL; writers queue on the
lock, readers do not) and on PostgreSQL."""
from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from store.models import Chunk, Example, Result

N_JOBS, ITEMS_PER_JOB, CHUNK_SIZE = 4, 64, 8
EXAMPLE_UPLOADS, EXAMPLES_PER_UPLOAD = 8, 25


def test_concurrent_writers_lose_no_write_and_fail_no_job(make_stack, news_en):
    stack = make_stack(REFTAG_CHUNK_SIZE=str(CHUNK_SIZE))
    workers = [stack.start_worker("train,tag,predict"), stack.start_worker("tag")]
    stack.start_web()
    label_set_id, _ = stack.create_trained_label_set(news_en, per_label=8, config={"epochs": 1, "min_steps": 0})
    other_set = stack.create_label_set(news_en, per_label=4)
    for worker in workers:
        stack.wait_ready(worker)
    base, texts = stack.base_url, [r["text"][:100] for r in news_en.test]
    done = threading.Event()
    errors: list[str] = []

    def submit(n: int) -> str:
        items = [{"id": f"j{n}-{i}", "text": texts[(n * ITEMS_PER_JOB + i) % len(texts)]} for i in range(ITEMS_PER_JOB)]
        answer = stack.client().post(f"{base}/v1/jobs", json={"label_set_id": label_set_id, "items": items}, timeout=60)
        assert answer.status_code == 202, answer.text
        return answer.json()["id"]

    def upload(n: int) -> int:
        rows = [{"text": f"busy upload {n}-{i} {secrets.token_hex(4)}", "label": news_en.label_names[i % 4]}
                for i in range(EXAMPLES_PER_UPLOAD)]
        answer = stack.client().post(f"{base}/v1/label-sets/{other_set}/examples", json={"examples": rows}, timeout=60)
        assert answer.status_code == 201 and answer.json()["added"] == EXAMPLES_PER_UPLOAD, answer.text
        return answer.json()["added"]

    def poll(job_ids: list[str]) -> None:
        client = stack.client()
        while not done.is_set():
            for job_id in list(job_ids):
                answer = client.get(f"{base}/v1/jobs/{job_id}", timeout=60)
                if answer.status_code != 200:
                    errors.append(f"GET job: {answer.status_code} {answer.text[:200]}")
                client.get(f"{base}/v1/jobs/{job_id}/results", params={"limit": 50}, timeout=60)
            done.wait(0.2)

    job_ids: list[str] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        poller = pool.submit(poll, job_ids)
        try:
            uploads = [pool.submit(upload, n) for n in range(EXAMPLE_UPLOADS)]
            for n in range(N_JOBS):  # one after another, so that workers are writing while jobs arrive
                job_ids.append(submit(n))
            jobs = [stack.wait_for_job(job_id, timeout=300) for job_id in job_ids]
            uploaded = sum(f.result() for f in uploads)
        finally:
            done.set()
        poller.result()

    assert errors == []
    for job in jobs:
        assert job["status"] == "succeeded", job
        assert job["progress"] == {"total": ITEMS_PER_JOB, "done": ITEMS_PER_JOB, "failed": 0}, job
    engine = create_engine(stack.database_url)
    try:
        with Session(engine) as s:
            for job_id in job_ids:
                positions = s.scalars(select(Result.position).where(Result.job_id == job_id)).all()
                assert sorted(positions) == list(range(ITEMS_PER_JOB))
            chunks = s.execute(select(Chunk.attempts, Chunk.error).where(Chunk.job_id.in_(job_ids))).all()
            assert len(chunks) == N_JOBS * ITEMS_PER_JOB // CHUNK_SIZE
            assert {(attempts, error) for attempts, error in chunks} == {(1, None)}  # no chunk needed a retry
            stored = s.scalar(select(func.count()).select_from(Example).where(Example.label_set_id == other_set))
            assert stored == uploaded + 4 * len(news_en.label_names) == EXAMPLE_UPLOADS * EXAMPLES_PER_UPLOAD + 16
    finally:
        engine.dispose()
