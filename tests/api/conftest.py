"""An app per test over each backend, driven in-process through Starlette's TestClient."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from app.logs import JsonFormatter
from app.main import create_app
from app.settings import Settings
from tests.waiting import wait_until


class LogLines(logging.Handler):
    """Formats at emit time, while the request's context (and its id) is current."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))


@pytest.fixture
def access_logged(tmp_path: Path) -> Iterator[tuple[TestClient, LogLines]]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        access_log=True,
        embedded_worker=False,
    )
    lines = LogLines()
    logger = logging.getLogger("vecroute.access")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        with TestClient(create_app(settings)) as c:
            wait_ready(c)
            yield c, lines
    finally:
        logger.removeHandler(lines)


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
