"""Real processes: crash durability under concurrent writers, replicas converging on one
PostgreSQL, read-your-writes."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.api.progress import collection
from tests.api.servers import Server
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
DOCS_L2 = {"name": "docs", "dim": 8, "metric": "l2"}


def test_acknowledged_points_survive_kill_9(database_url: str, tmp_path: Path) -> None:
    """4 writers ingest concurrently; kill -9; every acknowledged point is back and found."""
    server = Server(database_url, tmp_path / "data").start()
    acked: dict[str, list[float]] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            assert c.post("/collections", json=DOCS_L2).status_code == 201
            writers = [threading.Thread(target=_ingest, args=(c, w, acked)) for w in range(WRITERS)]
            for w in writers:
                w.start()
            # killed mid-ingest, once every writer has had batches acknowledged
            wait_until(lambda: _each_writer_acked(acked, 2), what="batches from every writer")
            server.kill()
            for w in writers:
                w.join()
    finally:
        server.stop()
    assert {pid.split("-")[0] for pid in acked} == {f"w{w}" for w in range(WRITERS)}
    server = Server(database_url, tmp_path / "data").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert collection(c)["count"] >= len(acked)
            ids = list(acked)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                body = {
                    "collection": "docs",
                    "vectors": [acked[pid] for pid in chunk],
                    "k": 1,
                    "routing": "exact",
                    "log": False,
                }
                r = c.post("/search/batch", json=body)
                assert r.status_code == 200, r.text
                results = r.json()["results"]
                assert [r["hits"][0]["id"] for r in results] == chunk
            assert c.get(f"/collections/docs/points/{ids[-1]}").status_code == 200
    finally:
        server.stop()


WRITERS = 4


def _ingest(client: httpx.Client, writer: int, acked: dict[str, list[float]]) -> None:
    """Batches of 50 until the server dies; records what was acknowledged (200)."""
    rng = np.random.default_rng(writer)
    start = 0
    while True:
        x = rng.standard_normal((50, 8)).astype(np.float32)
        batch = [{"id": f"w{writer}-{start + i}", "vector": v.tolist()} for i, v in enumerate(x)]
        try:
            r = client.post("/index", json={"collection": "docs", "points": batch})
        except httpx.HTTPError:
            return
        if r.status_code == 200:
            acked.update({p["id"]: p["vector"] for p in batch})
        start += 50


def _each_writer_acked(acked: dict[str, list[float]], batches: int) -> bool:
    per_writer = Counter(pid.split("-")[0] for pid in acked.copy())
    return all(per_writer[f"w{w}"] >= 50 * batches for w in range(WRITERS))


def test_replicas_converge_and_read_their_writes(pg_url: str, tmp_path: Path) -> None:
    a = Server(pg_url, tmp_path / "a", VECROUTE_EMBEDDED_WORKER="false")
    b = Server(pg_url, tmp_path / "b", VECROUTE_EMBEDDED_WORKER="false")
    try:
        for server in (a, b):  # start-up imports take seconds: both start at once
            server.launch()
        for server in (a, b):
            server.wait_ready()
        with (
            httpx.Client(base_url=a.url, timeout=30) as ca,
            httpx.Client(base_url=b.url, timeout=30) as cb,
        ):
            assert ca.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
            seq = _write(ca, "/index", {"points": [{"id": "x", "vector": [1, 0]}]})
            # read-your-writes: min_seq waits on the other replica until it has applied seq
            r = cb.post("/search", json={"collection": "docs", "vector": [1, 0], "min_seq": seq})
            assert r.status_code == 200, r.text
            assert [h["id"] for h in r.json()["hits"]] == ["x"]
            # without min_seq: searchable by catch-up alone
            _write(ca, "/index", {"points": [{"id": "y", "vector": [0, 1]}]})
            _converged(lambda: _ids(cb, [0, 1]) == ["y", "x"])
            _write(ca, "/delete", {"ids": ["y"]})
            _converged(lambda: _ids(cb, [0, 1]) == ["x"])
            # and writes through b reach a
            _write(cb, "/index", {"points": [{"id": "z", "vector": [0, 2]}]})
            _converged(lambda: _ids(ca, [0, 1])[0] == "z")
            assert cb.delete("/collections/docs").status_code == 204
            _converged(lambda: ca.get("/collections/docs").status_code == 404)
            # a seq this replica cannot reach: bounded wait, then 503 problem+json
            r = cb.post("/search", json={"collection": "docs", "vector": [1], "min_seq": 10**9})
            assert r.status_code == 503
            assert r.headers["content-type"] == "application/problem+json"
    finally:
        a.stop()
        b.stop()


def _write(client: httpx.Client, path: str, body: dict) -> int:
    """An acknowledged write to ``docs`` through one replica; its seq."""
    r = client.post(path, json={"collection": "docs", **body})
    assert r.status_code == 200, r.text
    return int(r.json()["seq"])


def _ids(client: httpx.Client, vector: list[float]) -> list[str]:
    r = client.post("/search", json={"collection": "docs", "vector": vector, "log": False})
    assert r.status_code == 200, r.text
    return [h["id"] for h in r.json()["hits"]]


def _converged(check: Callable[[], bool]) -> None:
    wait_until(check, what="the other replica to catch up")
