"""A real SQLite database per test, with rows made directly through the models: these tests
pin down the workers' side of store/ (leases, chunks, adapters), without the API in front of it."""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

import pytest

from store.db import engine_for
from store.models import Base, Chunk, Example, Job, JobItem, Label, LabelSet, Tenant


@pytest.fixture
def work_db(tmp_path, monkeypatch):
    """DATABASE_URL pointing at a fresh SQLite file holding the current schema."""
    url = f"sqlite:///{tmp_path / 'work.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        from store.migrate import upgrade
    except ImportError:
        Base.metadata.create_all(engine_for(url))
    else:
        upgrade(url)
    yield url
    engine_for(url).dispose()


class Rows:
    """Makes the rows a test needs: a tenant, label sets with examples, train and tag jobs."""

    def __init__(self, session_scope):
        self.session_scope = session_scope

    def label_set(self, labels=("World", "Sports"), multi_label=False, examples=4) -> str:
        with self.session_scope() as s:
            tenant = Tenant(name=f"t-{datetime.now().timestamp()}")
            s.add(tenant)
            s.flush()
            ls = LabelSet(tenant_id=tenant.id, name="news", multi_label=multi_label)
            ls.labels = [Label(name=name, position=i) for i, name in enumerate(labels)]
            s.add(ls)
            s.flush()
            for i in range(examples):
                for name in labels:
                    text = f"{name} example {i}"
                    s.add(Example(label_set_id=ls.id, text=text, labels=[name],
                                  text_hash=hashlib.sha256(text.encode()).hexdigest()))
            return ls.id

    def train_job(self, label_set_id: str, **fields) -> str:
        with self.session_scope() as s:
            ls = s.get(LabelSet, label_set_id)
            job = Job(tenant_id=ls.tenant_id, type="train", label_set_id=ls.id, **fields)
            s.add(job)
            s.flush()
            return job.id

    def tag_job(self, label_set_id: str, n_items: int, chunk_size: int, adapter_version=1, **fields) -> str:
        with self.session_scope() as s:
            ls = s.get(LabelSet, label_set_id)
            job = Job(tenant_id=ls.tenant_id, type="tag", label_set_id=ls.id, total=n_items,
                      adapter_version=adapter_version, **fields)
            s.add(job)
            s.flush()
            for i in range(n_items):
                s.add(JobItem(job_id=job.id, position=i, item_id=f"item-{i}", text=f"text {i}", chunk=i // chunk_size))
            for index, start in enumerate(range(0, n_items, chunk_size)):
                s.add(Chunk(job_id=job.id, index=index, size=min(chunk_size, n_items - start)))
            return job.id


@pytest.fixture
def rows(work_db):
    from store.db import session_scope

    return Rows(session_scope)


def run_as_worker(task: Any, *args: Any) -> Any:
    """Run a task's body with the request a worker gives it (not "called directly"), so that
    what it does with Celery — `Task.retry` sending its message again — happens as in a worker."""
    task.push_request(id=str(uuid.uuid4()), args=list(args), kwargs={}, called_directly=False, retries=0,
                      delivery_info={})
    try:
        return task.run(*args)
    finally:
        task.pop_request()
