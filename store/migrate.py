"""Bring a database to the newest schema: `python -m store.migrate` or `upgrade(url)`."""
from __future__ import annotations

import sys

from alembic import command
from alembic.config import Config

from service.settings import ROOT, get_settings


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def upgrade(url: str | None = None) -> None:
    """Run `alembic upgrade head` on `url` (default: settings.database_url)."""
    url = url or get_settings().database_url
    if url.startswith("sqlite:///"):
        (ROOT / "var").mkdir(exist_ok=True)
    command.upgrade(alembic_config(url), "head")


if __name__ == "__main__":
    upgrade(sys.argv[1] if len(sys.argv) > 1 else None)
