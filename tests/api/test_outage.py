"""The database goes away under load and comes back: 503 problem+json meanwhile, then the
same processes recover by themselves (requests, catch-up between replicas, query log)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.postgres import PrivatePostgres
from tests.api.servers import Server
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
NO_WORKER = {"VECROUTE_EMBEDDED_WORKER": "false"}


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres().init()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


class Traffic:
    """Writers and searchers in threads, counting answers by phase and (kind, status)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.phase = "up"
        self.seen: Counter[tuple[str, str, int]] = Counter()
        self.bad: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(kind, n))
            for n, kind in enumerate(("index", "index", "search", "search"))
        ]

    def _request(self, kind: str, i: int) -> httpx.Response:
        if kind == "index":
            point = {"id": f"t{i}", "vector": [1.0, float(i % 7), 0.0, 1.0]}
            return self.client.post("/index", json={"collection": "docs", "points": [point]})
        return self.client.post("/search", json={"collection": "docs", "vector": [1, 0, 0, 0]})

    def _loop(self, kind: str, n: int) -> None:
        i = n * 1_000_000
        while not self._stop.is_set():
            i += 1
            r = self._request(kind, i)
            self.seen[self.phase, kind, r.status_code] += 1
            if r.status_code not in (200, 503):
                self.bad.append(r.text[:300])
            elif r.status_code == 503 and r.headers["content-type"] != "application/problem+json":
                self.bad.append(f"503 as {r.headers['content-type']}")
            time.sleep(0.01)  # paces the traffic (a load, not a wait)

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def _index(client: httpx.Client, pid: str) -> httpx.Response:
    body = {"collection": "docs", "points": [{"id": pid, "vector": [0.0, 0.0, 5.0, 0.0]}]}
    return client.post("/index", json=body)


def test_database_down_is_503_and_recovers_without_restart(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    a = Server(private_pg.url, tmp_path / "a", **NO_WORKER)
    b = Server(private_pg.url, tmp_path / "b", **NO_WORKER)
    try:
        a.launch()
        b.launch()
        a.wait_ready()
        b.wait_ready()
        with (
            httpx.Client(base_url=a.url, timeout=30) as ca,
            httpx.Client(base_url=b.url, timeout=30) as cb,
        ):
            assert ca.post("/collections", json={"name": "docs", "dim": 4}).status_code == 201
            with Traffic(ca) as traffic:
                wait_until(lambda: traffic.seen["up", "index", 200] >= 5, what="writes while up")
                private_pg.stop()
                traffic.phase = "down"
                wait_until(lambda: traffic.seen["down", "index", 503] >= 5, what="503 on writes")
                r = _index(ca, "during")
                assert r.status_code == 503 and r.headers["retry-after"] == "1"
                assert r.json()["type"].endswith("store-unavailable")
                assert ca.get("/readyz").status_code == 503
                assert ca.get("/collections/docs").status_code == 503
                private_pg.start()
                traffic.phase = "back"
                wait_until(lambda: traffic.seen["back", "index", 200] >= 5, what="writes back")
            assert not traffic.bad, traffic.bad[:5]
            assert traffic.seen["down", "search", 200] > 0  # searches answer from memory
            assert ca.get("/readyz").status_code == 200
            # the replica's catch-up loop survived the outage: a new write reaches it
            assert _index(ca, "after").status_code == 200
            wait_until(lambda: _top(cb) == "after", what="the replica to catch up after the outage")
    finally:
        a.stop()
        b.stop()


def _top(client: httpx.Client) -> str | None:
    r = client.post(
        "/search", json={"collection": "docs", "vector": [0, 0, 1, 0], "k": 1, "log": False}
    )
    if r.status_code == 404:  # the replica has not caught up with the collection yet
        return None
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    return hits[0]["id"] if hits else None
