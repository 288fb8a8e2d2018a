"""Real processes: crash durability, replicas converging on one PostgreSQL, read-your-writes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.api.servers import Server

pytestmark = pytest.mark.slow
DOCS_L2 = {"name": "docs", "dim": 8, "metric": "l2"}


def _points(start: int, n: int, dim: int, rng: np.random.Generator) -> list[dict]:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return [{"id": f"p{start + i}", "vector": v.tolist()} for i, v in enumerate(x)]


def test_acknowledged_points_survive_kill_9(database_url: str, tmp_path: Path) -> None:
    server = Server(database_url, tmp_path / "data").start()
    acked: dict[str, list[float]] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            assert c.post("/collections", json=DOCS_L2).status_code == 201
            rng = np.random.default_rng(1)
            stop = threading.Event()

            def ingest() -> None:
                start = 0
                while not stop.is_set():
                    batch = _points(start, 50, 8, rng)
                    try:
                        r = c.post("/index", json={"collection": "docs", "points": batch})
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200:
                        acked.update({p["id"]: p["vector"] for p in batch})
                    start += 50

            writer = threading.Thread(target=ingest)
            writer.start()
            time.sleep(1.0)
            server.kill()
            stop.set()
            writer.join()
    finally:
        server.stop()
    assert acked
    server = Server(database_url, tmp_path / "data").start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            assert c.get("/collections/docs").json()["count"] >= len(acked)
            for pid in list(acked)[:: max(1, len(acked) // 20)]:
                r = c.post(
                    "/search",
                    json={"collection": "docs", "vector": acked[pid], "k": 1, "routing": "exact"},
                )
                assert r.json()["hits"][0]["id"] == pid
            last = list(acked)[-1]
            assert c.get(f"/collections/docs/points/{last}").status_code == 200
    finally:
        server.stop()


def test_replicas_converge_and_read_their_writes(pg_url: str, tmp_path: Path) -> None:
    a = Server(pg_url, tmp_path / "a", VECROUTE_EMBEDDED_WORKER="false").start()
    b = Server(pg_url, tmp_path / "b", VECROUTE_EMBEDDED_WORKER="false").start()
    try:
        with httpx.Client(base_url=a.url) as ca, httpx.Client(base_url=b.url) as cb:
            assert ca.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
            r = ca.post(
                "/index",
                json={"collection": "docs", "points": [{"id": "x", "vector": [1, 0]}]},
            )
            seq = r.json()["seq"]
            # read-your-writes: min_seq waits on the other replica until it has applied seq
            hits = cb.post(
                "/search", json={"collection": "docs", "vector": [1, 0], "min_seq": seq}
            ).json()["hits"]
            assert [h["id"] for h in hits] == ["x"]
            # without min_seq: searchable within 2 s by catch-up alone
            ca.post(
                "/index", json={"collection": "docs", "points": [{"id": "y", "vector": [0, 1]}]}
            )
            _eventually(lambda: _ids(cb, [0, 1]) == ["y", "x"])
            ca.post("/delete", json={"collection": "docs", "ids": ["y"]})
            _eventually(lambda: _ids(cb, [0, 1]) == ["x"])
            # and writes through b reach a
            cb.post(
                "/index", json={"collection": "docs", "points": [{"id": "z", "vector": [0, 2]}]}
            )
            _eventually(lambda: _ids(ca, [0, 1])[0] == "z")
            cb.delete("/collections/docs")
            _eventually(lambda: ca.get("/collections/docs").status_code == 404)
            # a seq this replica cannot reach: bounded wait, then 503 problem+json
            r = cb.post("/search", json={"collection": "docs", "vector": [1], "min_seq": 10**9})
            assert r.status_code == 503
            assert r.headers["content-type"] == "application/problem+json"
    finally:
        a.stop()
        b.stop()


def _ids(client: httpx.Client, vector: list[float]) -> list[str]:
    r = client.post("/search", json={"collection": "docs", "vector": vector, "log": False})
    return [h["id"] for h in r.json()["hits"]] if r.status_code == 200 else []


def _eventually(check, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "replica did not converge within 2 s"
        time.sleep(0.05)
