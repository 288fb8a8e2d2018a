"""Swapping in new clusterings and routers under concurrent search load fails no search.

A real server answers four search threads while the worker code publishes, through the
store, a new clustering, a trained router and another clustering; every search must
succeed, and the server must end on the newest versions.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from app.store.collections import get_collection
from app.store.db import Store
from app.store.query_log import LoggedQuery, append_queries
from bench import debian
from tests.api.servers import Server
from worker.build import run_build
from worker.train_router import TrainingPlan, run_train_router

SEARCHERS = 4


def test_searches_never_fail_while_versions_swap(database_url: str, tmp_path: Path) -> None:
    data = debian.load("cos", n_docs=2000, n_train=600, n_test=50)
    server = Server(database_url, tmp_path / "api", VECROUTE_EMBEDDED_WORKER="false").start()
    store = Store(database_url)
    failures: list[str] = []
    counts = [0] * SEARCHERS
    worst = [0.0] * SEARCHERS
    stop = threading.Event()

    def search_loop(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                q = data.test_queries[(counts[i] + i) % len(data.test_queries)].tolist()
                started = time.perf_counter()
                r = client.post("/search", json={"collection": "c", "vector": q, "k": 10})
                worst[i] = max(worst[i], time.perf_counter() - started)
                counts[i] += 1
                if r.status_code != 200 or len(r.json()["hits"]) != 10:
                    failures.append(f"{r.status_code}: {r.text[:200]}")

    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            client.post("/collections", json={"name": "c", "dim": 384, "metric": "cosine"})
            for start in range(0, len(data.docs), 500):
                points = [
                    {"id": str(i), "vector": data.docs[i].tolist()}
                    for i in range(start, start + 500)
                ]
                assert client.post("/index", json={"collection": "c", "points": points}).is_success
        threads = [threading.Thread(target=search_loop, args=(i,)) for i in range(SEARCHERS)]
        for t in threads:
            t.start()
        run_build(store, "c", {"nlist": 20}, lambda _: None)
        time.sleep(0.5)
        with store.read() as session:
            cid = get_collection(session, "c").id  # type: ignore[union-attr]
        append_queries(store, [LoggedQuery(cid, q, 10) for q in data.train_queries])
        trained = run_train_router(
            store, "c", {"objective": "topk"}, lambda _: None, TrainingPlan(min_queries=100)
        )
        time.sleep(0.5)
        run_build(store, "c", {"nlist": 30}, lambda _: None)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        with httpx.Client(base_url=server.url) as client:
            info = client.get("/collections/c").json()
    finally:
        stop.set()
        server.stop()
        store.dispose()

    assert failures == []
    assert min(counts) > 10
    assert info["index"]["clustering_version"] == 2 and info["index"]["nlist"] == 30
    # the router belonged to clustering 1: routing fell back to centroids
    assert trained["router_version"] == 1 and info["router"]["version"] is None
    assert max(worst) < 5.0, worst
