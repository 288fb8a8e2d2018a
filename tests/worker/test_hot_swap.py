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
from tests.api.progress import collection
from tests.api.servers import Server
from tests.waiting import wait_until
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
                try:
                    r = client.post("/search", json={"collection": "c", "vector": q, "k": 10})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    return
                worst[i] = max(worst[i], time.perf_counter() - started)
                counts[i] += 1
                if r.status_code != 200 or len(r.json()["hits"]) != 10:
                    failures.append(f"{r.status_code}: {r.text[:200]}")

    def swapped_in(clustering: int, router: int | None) -> dict:
        """Wait until the server serves these versions, then for every searcher to search
        a few times more on them."""
        info = wait_until(
            lambda: (
                (i := collection(api, "c"))["index"]["clustering_version"] == clustering
                and i["router"]["version"] == router
                and i
            ),
            what=f"clustering {clustering} and router {router} to be served",
        )
        seen = list(counts)

        def each_searched_again() -> bool:
            assert not failures, failures[:3]
            return all(now >= then + 5 for now, then in zip(counts, seen, strict=True))

        wait_until(each_searched_again, what="searches on the new versions")
        return info

    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            r = api.post("/collections", json={"name": "c", "dim": 384, "metric": "cosine"})
            assert r.status_code == 201, r.text
            for start in range(0, len(data.docs), 500):
                points = [
                    {"id": str(i), "vector": data.docs[i].tolist()}
                    for i in range(start, start + 500)
                ]
                r = api.post("/index", json={"collection": "c", "points": points})
                assert r.status_code == 200, r.text
            threads = [threading.Thread(target=search_loop, args=(i,)) for i in range(SEARCHERS)]
            for t in threads:
                t.start()
            run_build(store, "c", {"nlist": 20}, lambda _: None)
            swapped_in(clustering=1, router=None)
            with store.read() as session:
                cid = get_collection(session, "c").id  # type: ignore[union-attr]
            append_queries(store, [LoggedQuery(cid, q, 10) for q in data.train_queries])
            trained = run_train_router(
                store, "c", {"objective": "topk"}, lambda _: None, TrainingPlan(min_queries=100)
            )
            activated = trained["router_version"] if trained["activated"] else None
            swapped_in(clustering=1, router=activated)
            run_build(store, "c", {"nlist": 30}, lambda _: None)
            # the router belonged to clustering 1: routing falls back to centroids
            info = swapped_in(clustering=2, router=None)
            stop.set()
            for t in threads:
                t.join()
    finally:
        stop.set()
        server.stop()
        store.dispose()

    assert failures == []
    assert info["index"]["nlist"] == 30 and trained["router_version"] == 1
    assert max(worst) < 5.0, worst
