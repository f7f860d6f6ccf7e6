"""The checked-in Alembic migrations build exactly the schema store/models.py declares."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from store.migrate import alembic_config, upgrade
from store.models import Base


def test_migrations_match_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "render_as_batch": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ; run `alembic revision --autogenerate`: {diff}"


def test_upgrade_is_idempotent_and_reaches_head(tmp_path):
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    upgrade(url)
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        tables = set(inspect(connection).get_table_names())
    engine.dispose()
    assert current == ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert set(Base.metadata.tables) <= tables


def test_migrated_test_database_matches_the_models(database_url):
    """Same check on the suite's database: PostgreSQL when REFTAG_TEST_POSTGRES is set."""
    from store.db import engine_for

    with engine_for(database_url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
