"""An app per test over each backend, driven in-process through Starlette's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.waiting import wait_until


def wait_ready(client: TestClient) -> None:
    wait_until(lambda: client.get("/readyz").status_code == 200, what="the app to be ready")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        build_min_points=64,
        train_min_queries=5,
        catchup_interval_s=0.05,
        worker_poll_s=0.05,
        query_log_flush_s=0.05,
        max_body_bytes=200_000,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c


@pytest.fixture
def manual_client(settings: Settings) -> Iterator[TestClient]:
    """No automatic builds or trainings: the test decides which jobs run."""
    with TestClient(create_app(settings.model_copy(update={"auto_policy": False}))) as c:
        wait_ready(c)
        yield c
