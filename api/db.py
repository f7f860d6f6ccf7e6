"""Database access for the web tier: one short transaction per use, on the engines of the
app's settings (so tests and deployments can point one app at its own database).

`transaction()` is for anything that writes; `read_transaction()` for GETs and checks that
only read: on SQLite it never queues behind a worker's write, and it refuses to write."""
from __future__ import annotations

from contextlib import AbstractContextManager

from flask import Flask, current_app
from sqlalchemy.orm import Session, sessionmaker

from store.db import engine_for
from store.db import transaction as store_transaction


def init_app(app: Flask) -> None:
    url = app.config["REFTAG_SETTINGS"].database_url
    app.extensions["reftag_sessions"] = sessionmaker(bind=engine_for(url), expire_on_commit=False)
    app.extensions["reftag_read_sessions"] = sessionmaker(bind=engine_for(url, readonly=True), expire_on_commit=False)


def transaction() -> AbstractContextManager[Session]:
    """Commit on success, roll back on any error."""
    return store_transaction(current_app.extensions["reftag_sessions"])


def read_transaction() -> AbstractContextManager[Session]:
    """A read-only transaction (a consistent snapshot; any write in it fails)."""
    return store_transaction(current_app.extensions["reftag_read_sessions"])
