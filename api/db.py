"""Database access for the web tier: one short transaction per use, on the engine of the
app's settings (so tests and deployments can point one app at its own database)."""
from __future__ import annotations

from typing import ContextManager

from flask import Flask, current_app
from sqlalchemy.orm import Session, sessionmaker

from store.db import engine_for
from store.db import transaction as store_transaction


def init_app(app: Flask) -> None:
    engine = engine_for(app.config["REFTAG_SETTINGS"].database_url)
    app.extensions["reftag_sessions"] = sessionmaker(bind=engine, expire_on_commit=False)


def transaction() -> ContextManager[Session]:
    """Commit on success, roll back on any error."""
    return store_transaction(current_app.extensions["reftag_sessions"])
