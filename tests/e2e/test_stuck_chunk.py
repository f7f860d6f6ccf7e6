"""A chunk stuck past its lease — its worker frozen with SIGSTOP, alive but silent — is tagged by
another worker once the lease runs out; when the frozen worker wakes up and writes the same
chunk, its write adds nothing: every result is written and counted once."""
from __future__ import annotations

import os
import re
import signal
import sqlite3
import time

import pytest

from tests.e2e.conftest import Process, wait_for

N_ITEMS = 240
LATE_WRITE = re.compile(r"reftag\.tag_chunk\[[^\]]+\] succeeded in [0-9.]+s: 0\b")


def freeze_mid_chunk(worker: Process, database: str, job_id: str) -> int:
    """SIGSTOP the job's only tag worker while it holds a chunk's lease but no database lock
    (frozen inside a write, it would stall every other writer): try until caught so. Returns
    the chunk it holds."""
    for _ in range(100):
        os.killpg(worker.pid, signal.SIGSTOP)
        db = sqlite3.connect(database, timeout=1)
        try:
            db.execute("BEGIN IMMEDIATE")  # free: the worker is not inside a write transaction
            db.rollback()
            held = db.execute("SELECT \"index\" FROM chunks WHERE job_id = ? AND status = 'running'",
                              (job_id,)).fetchall()
            if held:
                return held[0][0]
        except sqlite3.OperationalError:  # database is locked
            pass
        finally:
            db.close()
        os.killpg(worker.pid, signal.SIGCONT)
        time.sleep(0.1)
    raise AssertionError("never caught the worker holding a chunk")


@pytest.mark.slow  # make test-fast leaves it out; tests/workers cover leases, and a killed worker end to end
@pytest.mark.parametrize("new_database", ["sqlite"], indirect=True)
def test_a_chunk_stuck_past_its_lease_is_retried_and_the_late_write_counts_once(tagging_under_way):
    run = tagging_under_way(N_ITEMS, "s")
    stack, frozen = run.stack, run.tagger
    database = stack.database_url.removeprefix("sqlite:///")
    stuck = freeze_mid_chunk(frozen, database, run.job_id)
    log_before = frozen.log_path.stat().st_size
    try:
        stack.start_worker("tag")
        job = stack.wait_for_job(run.job_id, timeout=180)  # it finishes while the stuck worker sleeps
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"total": N_ITEMS, "done": N_ITEMS, "failed": 0}

    def late_write_logged() -> bool:
        with open(frozen.log_path, "rb") as log:
            log.seek(log_before)
            return bool(LATE_WRITE.search(log.read().decode(errors="replace")))

    wait_for(late_write_logged, 60, "the woken worker finishing its chunk", frozen)
    assert stack.client().get(f"{stack.base_url}/v1/jobs/{run.job_id}").json()["progress"]["done"] == N_ITEMS
    assert [r["item_id"] for r in stack.results(run.job_id)] == [item["id"] for item in run.items]
    with sqlite3.connect(database) as db:
        [(attempts, status)] = db.execute("SELECT attempts, status FROM chunks WHERE job_id = ? AND \"index\" = ?",
                                          (run.job_id, stuck)).fetchall()
    assert (attempts, status) == (2, "done")
