"""A service over a given store and data directory, started and loaded, for service tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.service.service import Service
from app.settings import Settings
from app.store.db import Store


def create_docs(service: Service, payload_indexes: dict[str, str]) -> None:
    """Collection ``docs``: 8-d, inner product, searched exactly until a test clusters it."""
    service.create_collection(
        name="docs",
        dim=8,
        metric="ip",
        nlist=None,
        algorithm="kmeans",
        default_nprobe=None,
        payload_indexes=payload_indexes,
    )


def start_service(database_url: str, data_dir: Path, **settings: Any) -> Service:
    """No embedded worker and no automatic builds: the test decides when to cluster.

    ``settings`` override any other setting.
    """
    config = Settings(
        data_dir=data_dir,
        database_url=database_url,
        embedded_worker=False,
        snapshot_interval_s=3600,
        build_min_points=10**9,
        **settings,
    )
    s = Service(config, Store(config.resolved_database_url))
    s.start()
    s.wait_ready(120)  # a safety net: loading a test's few points takes milliseconds
    return s
