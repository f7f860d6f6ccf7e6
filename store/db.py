"""Engines and sessions, one pair for writing and one for reading.

SQLite gets WAL and a busy timeout so that the web tier and several workers can write at
once. A transaction that may write begins IMMEDIATE (it takes the write lock at BEGIN and
queues on the busy timeout); a read-only one (`readonly=True`: status polls, result pages,
key checks) begins DEFERRED, which under WAL reads a snapshot without waiting for writers
or holding them up. Read connections refuse writes (`PRAGMA query_only`; PostgreSQL: READ
ONLY transactions), so work that writes cannot slip onto the read path unnoticed.
PostgreSQL needs nothing else.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from service.settings import get_settings


def make_engine(url: str, readonly: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, issue BEGIN so that writers take the lock up front.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            if readonly:
                cur.execute("PRAGMA query_only=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # IMMEDIATE: a transaction that will write takes the write lock at BEGIN, so two
            # writers queue on busy_timeout instead of failing with "database is locked" mid-way.
            # A reader takes no lock until its first SELECT, and then only a WAL snapshot.
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    options = {"postgresql_readonly": True} if readonly else {}
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, execution_options=options)


@lru_cache(maxsize=16)
def engine_for(url: str, readonly: bool = False) -> Engine:
    return make_engine(url, readonly)


def get_engine(readonly: bool = False) -> Engine:
    return engine_for(get_settings().database_url, readonly)


def session_factory(readonly: bool = False) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(readonly), expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction on a session from `factory`: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def session_scope(readonly: bool = False) -> AbstractContextManager[Session]:
    """One transaction on the database of the current settings; `readonly` for work that only
    reads (it never waits for a writer on SQLite, and any write in it fails)."""
    return transaction(session_factory(readonly))
