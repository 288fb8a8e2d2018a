"""An app per test over each backend, driven in-process through Starlette's TestClient."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


def wait_ready(client: TestClient, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the app never became ready"
        time.sleep(0.02)


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
