"""The worker over HTTP, as a deployment runs it: an API with ``--no-worker`` and a separate
``vecroute worker`` process on one store.

Index a slice of the shared data, let the policy build the IVF, log queries by searching,
train a router and see recall at low nprobe (4 of 76 lists) go up; kill the worker in the
middle of a training job and see the job retried and the active router unchanged until it
succeeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.engine.evaluation import recall_at_k
from bench import debian
from tests.api.progress import (
    FINISHED,
    collection,
    job,
    served_build,
    served_ivf,
    start_build,
    wait_logged,
)
from tests.api.servers import Server, WorkerProcess
from tests.waiting import wait_until

WORKER_ENV = {
    "VECROUTE_EMBEDDED_WORKER": "false",
    "VECROUTE_BUILD_MIN_POINTS": "1000",
    "VECROUTE_TRAIN_MIN_QUERIES": "500",
    "VECROUTE_RETRAIN_MIN_NEW_QUERIES": "1000000",
    "VECROUTE_SCHEDULE_INTERVAL_S": "0.2",
    "VECROUTE_WORKER_POLL_S": "0.1",
    "VECROUTE_JOB_LEASE_S": "2",
}


@pytest.fixture(scope="module")
def data() -> debian.Dataset:
    return debian.load("ip", n_docs=3000, n_train=1500, n_test=300)


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[httpx.Client]:
    server = Server(database_url, tmp_path / "api", **WORKER_ENV).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield client
    finally:
        server.stop()


@pytest.fixture
def spawn_worker(database_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Starts ``vecroute worker`` processes; every one is stopped at teardown, even on failure."""
    started: list[WorkerProcess] = []

    def spawn(**env: str) -> WorkerProcess:
        worker = WorkerProcess(database_url, tmp_path / f"worker{len(started)}", **WORKER_ENV | env)
        started.append(worker.start())
        return worker

    yield spawn
    for worker in started:
        worker.stop()


def _index(api: httpx.Client, data: debian.Dataset) -> None:
    r = api.post("/collections", json={"name": "docs", "dim": 384, "metric": "ip"})
    assert r.status_code == 201
    for start in range(0, len(data.docs), 500):
        points = [
            {"id": str(i), "vector": data.docs[i].tolist()}
            for i in range(start, min(start + 500, len(data.docs)))
        ]
        assert api.post("/index", json={"collection": "docs", "points": points}).status_code == 200


def _log_training_queries(api: httpx.Client, data: debian.Dataset) -> None:
    for start in range(0, len(data.train_queries), 100):
        batch = data.train_queries[start : start + 100].tolist()
        r = api.post("/search/batch", json={"collection": "docs", "vectors": batch, "k": 10})
        assert r.status_code == 200, r.text
    wait_logged(api, len(data.train_queries))  # in the store, where the worker reads them


def _recall(api: httpx.Client, data: debian.Dataset, nprobe: int) -> tuple[float, str]:
    body = {
        "collection": "docs",
        "vectors": data.test_queries.tolist(),
        "k": 10,
        "nprobe": nprobe,
        "log": False,
    }
    r = api.post("/search/batch", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    found = np.full((len(data.test_queries), 10), -1)  # a small list may hold fewer than k
    for row, result in enumerate(out["results"]):
        ids = [int(h["id"]) for h in result["hits"]]
        found[row, : len(ids)] = ids
    return recall_at_k(found, data.test_gt, 10), out["routing"]


def test_policy_builds_then_training_raises_recall_at_low_nprobe(
    api: httpx.Client, spawn_worker: Callable[..., WorkerProcess], data: debian.Dataset
) -> None:
    # Training waits for the whole log, so the router learns from all 1,500 queries.
    spawn_worker(VECROUTE_TRAIN_MIN_QUERIES=str(len(data.train_queries)))
    _index(api, data)
    served_ivf(api)  # the policy's build
    before, routing = _recall(api, data, nprobe=4)
    assert routing == "centroid"
    _log_training_queries(api, data)
    # The policy trains a router for the fresh clustering once enough queries are logged.
    info = wait_until(
        lambda: (i := collection(api))["router"]["version"] and i, what="the policy's router"
    )
    assert info["router"]["kind"] == "linear"
    after, routing = _recall(api, data, nprobe=4)
    assert routing == "learned"
    assert after > before + 0.03, (before, after)

    # target_recall picks the smallest nprobe whose held-out lower bound reaches it
    table = info["recall_table"]
    assert table["routing"] == "learned" and table["router_version"] == info["router"]["version"]
    body = {"collection": "docs", "vector": data.test_queries[0].tolist(), "target_recall": 0.9}
    r = api.post("/search", json=body)
    assert r.status_code == 200, r.text
    chosen = r.json()["nprobe"]
    bounds = zip(table["nprobe"], table["recall_lower_bound"], strict=True)
    at_or_above = [p for p, lo in bounds if lo >= 0.9]
    assert at_or_above and chosen <= at_or_above[0]
    achieved, _ = _recall(api, data, nprobe=chosen)
    assert achieved >= 0.9 - 0.03  # 300 unseen test queries; bench/target_recall.py measures it


def test_killed_training_job_is_retried_and_router_unchanged_meanwhile(
    api: httpx.Client, spawn_worker: Callable[..., WorkerProcess], data: debian.Dataset
) -> None:
    worker = spawn_worker(VECROUTE_AUTO_POLICY="false")
    _index(api, data)
    served_build(api, start_build(api))  # no policy: built by hand
    _log_training_queries(api, data)
    r = api.post("/train-router", json={"collection": "docs"})
    assert r.status_code == 202, r.text
    training = r.json()["job_id"]
    wait_until(lambda: job(api, training)["status"] == "running", what="the job to run")
    worker.kill()
    assert job(api, training)["status"] == "running"  # until its lease expires

    # A second worker takes the job over once the dead one's lease expires (2 s); until it
    # succeeds, no router is active.
    spawn_worker(VECROUTE_AUTO_POLICY="false")

    def retried() -> dict[str, Any] | None:
        router = collection(api)["router"]["version"]  # read first: only success sets one
        current = job(api, training)
        if current["status"] in FINISHED:
            return current
        assert current["status"] in ("running", "queued") and current["attempts"] <= 2
        assert router is None
        return None

    done = wait_until(retried, what="the retried job")
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert done["result"]["activated"] is True
    wait_until(
        lambda: collection(api)["router"]["version"] == done["result"]["router_version"],
        what="the new router to be served",
    )
