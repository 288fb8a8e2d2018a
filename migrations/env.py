"""Alembic environment: runs on the connection app.store.migrate hands over, or on the
URL from the settings when invoked as ``alembic upgrade head``."""

from __future__ import annotations

from alembic import context

from app.settings import Settings
from app.store.db import make_engine
from app.store.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(Settings().resolved_database_url)
    with engine.execution_options(vecroute_write=True).connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run `vecroute migrate`")
run_migrations_online()
