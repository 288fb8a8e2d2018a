"""``/readyz`` tells why the service will not become ready when loading the indexes failed."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update

from app.main import create_app
from app.settings import Settings
from app.store.collections import create_collection
from app.store.db import Store
from app.store.migrate import upgrade
from app.store.models import Collection
from tests.waiting import wait_until


def test_a_failed_load_is_reported_with_its_reason(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url)
    upgrade(store)
    record = create_collection(
        store, name="docs", dim=2, metric="ip", nlist=None, algorithm="kmeans"
    )
    assert record is not None
    with store.write() as session:  # an active clustering the store does not hold
        session.execute(update(Collection).values(clustering_version=7))
    store.dispose()

    settings = Settings(data_dir=tmp_path, database_url=database_url, embedded_worker=False)
    with TestClient(create_app(settings)) as client:
        body = wait_until(
            lambda: "still loading" not in (b := client.get("/readyz").json())["detail"] and b,
            what="the load to finish or fail",
        )
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("application/problem+json")
        assert body["detail"].startswith("loading indexes failed: ")
        assert body["indexes_loaded"] is False and body["ready"] is False
