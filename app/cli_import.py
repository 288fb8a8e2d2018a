"""``vecroute import``: a file into a collection through the service, with a progress bar."""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from app.service.bulk_import import open_source
from app.service.service import Service
from app.settings import Settings

READY_TIMEOUT_S = 600.0


def import_file(
    settings: Settings, collection: str, path: Path, *, ids: Path | None, batch: int
) -> int:
    """Upsert every point of ``path`` into ``collection``; returns how many were read.

    Each batch is one ``Service.index_points`` call, the call behind ``POST /index``: the
    same checks, the same atomic store transaction. A failing batch stops the import; the
    batches before it stay stored (re-running is safe: ids are upserted).
    """
    source = open_source(path, ids)
    service = Service(settings)
    service.start()
    try:
        _wait_ready(service)
        service.registry.get(collection)  # fail before the first batch if it does not exist
        done = 0
        with tqdm(total=source.total, desc=f"import {collection}", unit="pt") as bar:
            for points in source.batches(batch):
                service.index_points(collection, points)
                done += len(points)
                bar.update(len(points))
        return done
    finally:
        service.stop()


def _wait_ready(service: Service) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not service.ready:
        if service.load_error is not None:
            raise RuntimeError("loading the indexes failed") from service.load_error
        if time.monotonic() > deadline:
            raise TimeoutError("the indexes did not load in time")
        time.sleep(0.05)
