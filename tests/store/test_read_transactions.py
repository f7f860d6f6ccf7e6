"""Reads never queue behind a writer, and the read path cannot write (store/db.py)."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from store.db import session_scope
from store.models import Tenant


@contextmanager
def write_lock_held(write: Callable) -> Iterator[None]:
    """Inside: another thread is in a write transaction (BEGIN IMMEDIATE on SQLite: the write
    lock, held until commit) that has done `write(session)` and waits to commit until the end."""
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with session_scope() as s:
            write(s)
            s.flush()
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(30)
        yield
    finally:
        release.set()
        thread.join()


def test_a_read_answers_while_a_writer_holds_the_lock(database_url):
    with session_scope() as s:
        s.add(Tenant(id="tn_reader", name="before"))

    def rename(s) -> None:
        s.get(Tenant, "tn_reader").name = "after"

    with write_lock_held(rename):
        # A read that queued for the lock would wait out the 30 s busy timeout and then fail.
        with session_scope(readonly=True) as s:
            assert s.scalar(select(Tenant.name).where(Tenant.id == "tn_reader")) == "before"
    with session_scope(readonly=True) as s:
        assert s.scalar(select(Tenant.name).where(Tenant.id == "tn_reader")) == "after"


def test_the_read_path_refuses_to_write(database_url):
    with pytest.raises(DBAPIError, match="readonly|read-only"):
        with session_scope(readonly=True) as s:
            s.add(Tenant(name="sneaky"))
    with session_scope(readonly=True) as s:
        assert s.scalars(select(Tenant)).all() == []


def test_status_reads_answer_while_a_worker_holds_the_write_lock(client, auth, make_label_set, add_adapter,
                                                                  clean_redis):
    ls = make_label_set()
    add_adapter(ls["id"])
    job = client.post("/v1/jobs", headers=auth, json={"label_set_id": ls["id"], "items": [{"text": "a"}]}).get_json()
    with write_lock_held(lambda s: s.add(Tenant(name="a write in progress"))):
        for url in ["/v1/label-sets", f"/v1/label-sets/{ls['id']}", f"/v1/label-sets/{ls['id']}/adapters",
                    "/v1/jobs", f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/results",
                    f"/v1/jobs/{job['id']}/results?format=csv"]:
            response = client.get(url, headers=auth)
            assert response.status_code == 200, (url, response.get_data(as_text=True)[:300])
        assert client.get(f"/v1/jobs/{job['id']}", headers=auth).get_json()["status"] == "queued"
