"""``vecroute import``: a file into a collection through the service, with a progress bar."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from app.service.bulk_import import open_source
from app.service.service import Service
from app.settings import Settings
from app.store.db import Store

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
    service = Service(settings, Store(settings.resolved_database_url))
    service.start()
    try:
        service.wait_ready(READY_TIMEOUT_S)
        service.collection_dim(collection)  # fail before the first batch if it does not exist
        done = 0
        with tqdm(total=source.total, desc=f"import {collection}", unit="pt") as bar:
            for points in source.batches(batch):
                service.index_points(collection, points)
                done += len(points)
                bar.update(len(points))
        return done
    finally:
        service.stop()
