"""Run the Alembic migrations from code (start-up and ``vecroute migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

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
        if store.sqlite:
            _sqlite_foreign_keys(connection, on=False)
        else:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_MIGRATION_LOCK})
            connection.commit()
        try:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
        finally:
            if store.sqlite:
                _sqlite_foreign_keys(connection, on=True)
            else:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_MIGRATION_LOCK})
                connection.commit()


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    """Switch SQLite's foreign keys for this connection.

    Off while migrating: a batch migration rebuilds a table by copying it, dropping the old
    one and renaming the copy, and with foreign keys on the drop deletes every child row.
    The pragma is a no-op inside a transaction, so it goes to the driver connection between
    transactions (it runs in autocommit mode, see app.store.db).
    """
    connection.connection.driver_connection.execute(  # type: ignore[union-attr]
        f"PRAGMA foreign_keys={'ON' if on else 'OFF'}"
    )
    if on:
        violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        connection.commit()
        if violations:
            raise RuntimeError(f"migration left foreign key violations: {violations[:5]}")


def current_revision(store: Store) -> str | None:
    with store.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
