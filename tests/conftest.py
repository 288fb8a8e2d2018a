"""Shared fixtures: a database URL for each backend (SQLite file, fresh PostgreSQL database).

PostgreSQL tests fail, never skip, when the server is unreachable: the CI runs both.
The whole session, collection included, runs without the caller's app settings or .env
(tests/hermetic.py).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# As `vecroute serve` does (app/cli.py), before faiss loads: OpenMP threads that spin while
# idle starve each other on a small shared machine (a 4-bit codebook trained 8x slower).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
from sqlalchemy import create_engine, text

from app.store.db import Store
from app.store.migrate import upgrade
from bench.databases import postgres_database
from tests.hermetic import isolate

_HERMETIC = pytest.StashKey[tuple[pytest.MonkeyPatch, tempfile.TemporaryDirectory[str]]]()


def pytest_configure(config: pytest.Config) -> None:
    """Before collection: some test modules build an app (and its Settings) on import."""
    patch, workdir = pytest.MonkeyPatch(), tempfile.TemporaryDirectory(prefix="vecroute-tests-")
    isolate(patch, Path(workdir.name))
    config.stash[_HERMETIC] = (patch, workdir)


def pytest_unconfigure(config: pytest.Config) -> None:
    patch, workdir = config.stash[_HERMETIC]
    patch.undo()
    workdir.cleanup()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database created for this test session and dropped at its end."""
    with postgres_database("vecroute_test") as url:
        yield url


def reset_pg(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each backend, one per test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("pg_database")
    reset_pg(url)
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated, empty store of each backend."""
    s = Store(database_url)
    upgrade(s)
    yield s
    s.dispose()


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """An empty PostgreSQL database (for tests that need several processes on one store)."""
    url = request.getfixturevalue("pg_database")
    reset_pg(url)
    return url
