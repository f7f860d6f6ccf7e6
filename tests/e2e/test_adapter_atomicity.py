"""An adapter version exists whole or not at all: a worker SIGKILLed inside the transaction that
stores it (held there by the test-only failpoint in `store.jobs.complete_train_job`, after every row
is written and before the commit) leaves no version and no finished job, and the retried job
stores exactly one version, whose bytes match their checksum. On SQLite and PostgreSQL.
(The whole stack doing the same with a real train worker: test_worker_loss.py, slow.)"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import func, select

from store import adapters, jobs
from store.db import session_scope
from store.migrate import upgrade
from store.models import Adapter, Job, Label, LabelSet, Tenant, utcnow
from tests.e2e.conftest import REPO, wait_for

# What a worker decides for a label set's first version.
FIRST = adapters.first_version("macro_f1", None)

WEIGHTS = bytes(range(256)) * 200  # 51 KB, about a real adapter's size
CONFIG = '{"intervention": "loreft", "rank": 4}'


def test_a_worker_killed_while_storing_an_adapter_leaves_no_version_and_the_retry_stores_one(
        new_database, tmp_path, monkeypatch):
    url = new_database()
    upgrade(url)
    monkeypatch.setenv("DATABASE_URL", url)
    with session_scope() as s:
        tenant = Tenant(name="acme")
        s.add(tenant)
        s.flush()
        label_set = LabelSet(tenant_id=tenant.id, name="news", labels=[Label(name="a", position=0),
                                                                       Label(name="b", position=1)])
        s.add(label_set)
        s.flush()
        job = Job(tenant_id=tenant.id, type="train", label_set_id=label_set.id)
        s.add(job)
        s.flush()
        job_id, label_set_id = job.id, label_set.id

    marker = tmp_path / "storing"
    doomed = subprocess.Popen(
        [sys.executable, "-c", "import sys; from store import jobs; jobs.lease_train_job(sys.argv[1]); "
         "from store import adapters; jobs.complete_train_job(sys.argv[1], bytes(range(256)) * 200, sys.argv[2], "
         "{'macro_f1': 0.8}, 10, adapters.first_version('macro_f1', 0.8))",
         job_id, CONFIG],
        cwd=REPO, env={**os.environ, "REFTAG_FAILPOINT": f"store_adapter:{marker}"})
    try:
        wait_for(marker.exists, 60, "the worker inside store_adapter")
        os.kill(doomed.pid, signal.SIGKILL)
    finally:
        doomed.kill()
        doomed.wait()

    with session_scope(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Adapter)) == 0
        killed = s.get(Job, job_id)
        assert (killed.status, killed.adapter_version, killed.attempts) == ("running", None, 1)

    # The lease runs out; the reconciler hands the job to another worker, which stores it.
    with session_scope() as s:
        s.get(Job, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)
    assert jobs.reconcile().train_jobs == [job_id]
    retry = jobs.lease_train_job(job_id)
    assert retry.attempt == 2
    stored = jobs.complete_train_job(job_id, WEIGHTS, CONFIG, {"macro_f1": 0.8}, 10, FIRST)
    assert (stored.version, stored.is_active) == (1, True)
    again = jobs.complete_train_job(job_id, WEIGHTS, CONFIG, {"macro_f1": 0.8}, 10, FIRST)
    assert again == stored  # a third run: no new row

    with session_scope(readonly=True) as s:
        [row] = s.scalars(select(Adapter).where(Adapter.label_set_id == label_set_id)).all()
        assert row.weights == WEIGHTS and row.checksum == adapters.adapter_checksum(WEIGHTS, CONFIG)
        assert s.get(Job, job_id).status == "succeeded"
    assert adapters.adapter_bytes(adapters.adapter_ref(label_set_id)) == (WEIGHTS, CONFIG, row.checksum)
