"""Run the Alembic migrations from code (start-up and ``vecroute migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from app.store.db import Store

ROOT = Path(__file__).resolve().parents[2]
# Any constant works: it only has to be the same in every process migrating this database.
PG_MIGRATION_LOCK = 7_000_001


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return config


def upgrade(store: Store, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe when several processes start at once."""
    config = alembic_config()
    with store.engine.execution_options(vecroute_write=True).connect() as connection:
        if not store.sqlite:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_MIGRATION_LOCK})
            connection.commit()
        try:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
        finally:
            if not store.sqlite:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_MIGRATION_LOCK})
                connection.commit()


def current_revision(store: Store) -> str | None:
    with store.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
