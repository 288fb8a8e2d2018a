"""Trying cluster mode as a newcomer does: ``VECROUTE_CLUSTER_ADDRESS=local`` (a Ray
instance started inside the server process) over the default SQLite store, which the
replicas, Ray worker processes of the same machine, open by its absolute path."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.api.servers import Server
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

DIM, N_POINTS, NLIST = 8, 1000, 8


def test_a_local_cluster_over_the_default_sqlite_store_serves_sharded_searches(
    tmp_path: Path,
) -> None:
    x = np.random.default_rng(0).normal(size=(N_POINTS, DIM)).astype(np.float32)
    server = Server(
        "",  # unset: the default SQLite file under the data directory
        tmp_path / "data",
        VECROUTE_CLUSTER_ADDRESS="local",
        VECROUTE_CLUSTER_SYNC_INTERVAL_S="0.2",
        VECROUTE_AUTO_POLICY="false",
    ).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            body = {"name": "docs", "dim": DIM, "metric": "l2", "nlist": NLIST, "shards": 2}
            assert c.post("/collections", json=body).status_code == 201
            points = [{"id": str(i), "vector": v.tolist()} for i, v in enumerate(x)]
            assert (
                c.post("/index", json={"collection": "docs", "points": points}).status_code == 200
            )
            assert c.post("/collections/docs/build", json={"seed": 7}).status_code == 202
            info = wait_until(lambda: _served(c), what="the shards ready, the API routing-only")
            found = c.post(
                "/search/batch",
                json={"collection": "docs", "vectors": x[:20].tolist(), "k": 1, "log": False},
            )
    finally:
        server.stop()
    assert (tmp_path / "data" / "vecroute.db").exists()
    assert sum(s["points"] for s in info["shards"]) == N_POINTS
    assert sum(s["lists"] for s in info["shards"]) == NLIST
    assert found.status_code == 200 and found.json()["shards_probed"] >= 1.0
    assert [r["hits"][0]["id"] for r in found.json()["results"]] == [str(i) for i in range(20)]


def _served(c: httpx.Client) -> dict | None:
    """Collection info once every replica is ready and the API holds no vector of it."""
    info: dict = c.get("/collections/docs").json()
    replicas = [r for s in info["shards"] for r in s["replicas"]]
    ready = len(replicas) == 2 and all(r["state"] == "ready" and r["pid"] for r in replicas)
    return info if ready and info["index"]["bytes_per_vector"] < DIM * 4 else None
