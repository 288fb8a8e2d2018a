"""Quantization kinds over HTTP: creation, bad input, re-ranked search, PATCH rebuilds, restart."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.engine.metric import Metric, prepare
from app.main import create_app
from app.settings import Settings
from bench import debian
from tests.api.checked import json_of
from tests.api.conftest import wait_ready
from tests.api.progress import collection, finished_job, served_build, start_build, succeeded_job
from tests.api.servers import Server, maps_torch
from tests.waiting import wait_until

N_DOCS = 1200
# Tiny catalyzers for the tests (the defaults train for minutes): 1,000 points is the least
# the training accepts (held-out split, 50th neighbour).
TINY_CATALYZER = {"catalyzer_min_points": 1000, "catalyzer_epochs": 2, "catalyzer_hidden": 128}
TINY_CATALYZER_ENV = {f"VECROUTE_{key.upper()}": str(v) for key, v in TINY_CATALYZER.items()}


@pytest.fixture
def manual_client(settings: Settings) -> Iterator[TestClient]:
    """No automatic jobs; bodies large enough for 100 384-d points."""
    update = {"auto_policy": False, "max_body_bytes": 8 << 20}
    with TestClient(create_app(settings.model_copy(update=update))) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="module")
def data() -> debian.Dataset:
    return debian.load("cos", n_docs=N_DOCS, n_train=10, n_test=40)


def create(client: httpx.Client, quantization: dict[str, Any] | None, name: str = "docs") -> None:
    body: dict[str, Any] = {"name": name, "dim": 384, "metric": "cosine", "nlist": 16}
    if quantization is not None:
        body["quantization"] = quantization
    json_of(client.post("/collections", json=body), 201)


def upload(client: httpx.Client, docs: np.ndarray, name: str = "docs", start: int = 0) -> None:
    for lo in range(0, len(docs), 100):
        points = [
            {"id": f"d{start + i}", "vector": docs[i].tolist()}
            for i in range(lo, min(lo + 100, len(docs)))
        ]
        json_of(client.post("/index", json={"collection": name, "points": points}))


def search(client: httpx.Client, q: np.ndarray, **extra: Any) -> dict[str, Any]:
    body = {"collection": "docs", "vector": q.tolist(), "k": 10, "log": False, **extra}
    return dict(json_of(client.post("/search", json=body)))


def exact_scores(docs: np.ndarray, q: np.ndarray, hits: list[dict[str, Any]]) -> np.ndarray:
    x = prepare(docs, Metric.COSINE)
    qq = prepare(q, Metric.COSINE)[0]
    return np.array([x[int(h["id"][1:])] @ qq for h in hits], np.float32)


def test_bad_quantizations_are_422_and_create_nothing(manual_client: TestClient) -> None:
    for bad in (
        {"kind": "zip"},
        {"kind": "pq", "m": 7},  # does not divide 384
        {"kind": "sq8", "m": 4},  # not a parameter of sq8
        {"kind": "pq", "nbits": 8},
        {"kind": "catalyzer-sign", "bits": 32},  # bits not offered
        {"kind": "catalyzer-lattice", "bits": 128},
        {"m": 4},
    ):
        r = manual_client.post(
            "/collections", json={"name": "bad", "dim": 384, "quantization": bad}
        )
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert manual_client.get("/collections/bad").status_code == 404
    # PATCH: same checks, nothing enqueued, nothing changed.
    create(manual_client, {"kind": "sq8"})
    for bad in ({"kind": "zip"}, {"kind": "pq", "m": 5}, {"kind": "catalyzer-sign", "bits": 32}):
        r = manual_client.patch("/collections/docs", json={"quantization": bad})
        assert r.status_code == 422, r.text
    # Too few points to train a catalyzer: 409 that says how many it needs.
    r = manual_client.patch(
        "/collections/docs", json={"quantization": {"kind": "catalyzer-lattice"}}
    )
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "at least 2000 points" in r.json()["detail"] and "holds 0" in r.json()["detail"]
    assert (
        manual_client.patch("/collections/nope", json={"quantization": {"kind": "sq8"}}).status_code
        == 404
    )
    assert json_of(manual_client.get("/jobs"))["jobs"] == []
    assert collection(manual_client)["index"]["quantization"] == {"kind": "sq8"}
    r = manual_client.post(
        "/search", json={"collection": "docs", "vector": [0.0] * 384, "rerank": 0}
    )
    assert r.status_code == 422


@pytest.mark.parametrize("kind", ["sq8", "pq", "rabitq"])
def test_searches_on_codes_return_exact_scores(
    manual_client: TestClient, data: debian.Dataset, kind: str
) -> None:
    create(manual_client, {"kind": kind})
    upload(manual_client, data.docs)
    info = served_build(manual_client, start_build(manual_client))
    assert info["index"]["quantization"]["kind"] == kind
    # Exact float32 vectors in memory (the default) plus their id map, plus the codes.
    assert 384 * 4 + 16 < info["index"]["bytes_per_vector"] < 2 * (384 * 4 + 16)
    found = 0
    for q in data.test_queries[:10]:
        out = search(manual_client, q, nprobe=4)
        assert out["candidates"] > 10 and out["scanned"] > 0
        got = np.array([h["score"] for h in out["hits"]], np.float32)
        np.testing.assert_allclose(got, exact_scores(data.docs, q[None], out["hits"]), atol=1e-5)
        # Re-ranking every candidate of every list is exact search.
        every = search(manual_client, q, nprobe=16, rerank=N_DOCS)
        exact = search(manual_client, q, routing="exact")
        assert [h["id"] for h in every["hits"]] == [h["id"] for h in exact["hits"]]
        found += len(out["hits"])
    assert found == 100
    batch = json_of(
        manual_client.post(
            "/search/batch",
            json={"collection": "docs", "vectors": data.test_queries[:5].tolist(), "rerank": 30},
        )
    )
    assert batch["candidates"] == 30 and len(batch["results"]) == 5


def test_a_failed_rebuild_keeps_the_old_index(
    manual_client: TestClient, data: debian.Dataset
) -> None:
    create(manual_client, None)
    upload(manual_client, data.docs[:100])  # too few points for 4-bit codebooks (256)
    served_build(manual_client, start_build(manual_client, nlist=4))
    before = search(manual_client, data.test_queries[0])
    r = manual_client.patch("/collections/docs", json={"quantization": {"kind": "pq"}})
    assert r.status_code == 202, r.text
    job = finished_job(manual_client, r.json()["job_id"])
    assert job["status"] == "failed" and "at least 256 points" in job["error"], job
    info = collection(manual_client)
    assert info["index"]["quantization"] == {"kind": "none"}
    assert search(manual_client, data.test_queries[0]) == before


class SearchLoop:
    """Single searches against a server on a thread of their own, from ``with`` to its end;
    every failed or short answer is kept."""

    def __init__(self, url: str, queries: np.ndarray) -> None:
        self.url, self.queries = url, queries
        self.count = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SearchLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def wait_for_more(self, n: int) -> None:
        seen = self.count
        wait_until(lambda: self.count > seen + n, what=f"{n} more searches")

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while not self._stop.is_set():
                q = self.queries[self.count % len(self.queries)]
                body = {"collection": "docs", "vector": q.tolist(), "k": 10, "log": False}
                r = c.post("/search", json=body)
                self.count += 1
                if r.status_code != 200 or len(r.json()["hits"]) != 10:
                    self.failures.append(f"{r.status_code}: {r.text[:200]}")


def test_patch_rebuilds_while_searches_go_on_and_survives_a_restart(
    database_url: str, tmp_path: Path, data: debian.Dataset
) -> None:
    env = {"VECROUTE_AUTO_POLICY": "false", "VECROUTE_EXACT_VECTORS": "mmap"}
    server = Server(database_url, tmp_path / "api", **env).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            create(client, None)
            upload(client, data.docs)
            served_build(client, start_build(client))
            float_bytes = collection(client)["index"]["bytes_per_vector"]
            with SearchLoop(server.url, data.test_queries) as loop:
                body = {"quantization": {"kind": "pq", "m": 48}}
                r = client.patch("/collections/docs", json=body)
                assert r.status_code == 202, r.text
                succeeded_job(client, r.json()["job_id"])
                info = wait_until(
                    lambda: (
                        (i := collection(client))["index"]["quantization"]["kind"] == "pq" and i
                    ),
                    what="the pq index to be served",
                )
                loop.wait_for_more(20)
            assert loop.failures == [] and loop.count > 20
            assert info["index"]["quantization"] == {"kind": "pq", "m": 48}
            # Memory-mapped exact vectors: 24 code bytes (plus the padding of each list's last
            # block of 32 codes), 8 list-id bytes, 16 id-map bytes.
            assert 48 <= info["index"]["bytes_per_vector"] < 48 + 24 < float_bytes
            before = [search(client, q, nprobe=4) for q in data.test_queries[:5]]
        server.stop()  # writes the snapshot
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert collection(client)["index"]["quantization"] == {"kind": "pq", "m": 48}
            assert [search(client, q, nprobe=4) for q in data.test_queries[:5]] == before
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["sq8", "catalyzer-lattice"])
def test_a_replica_rebuilds_when_it_catches_up(
    settings: Settings, tmp_path: Path, data: debian.Dataset, kind: str
) -> None:
    """Two API processes on one store (in-process here): the PATCH through one is recorded
    by the worker, and the other rebuilds its index with the new codes on catch-up (for a
    catalyzer kind, with the catalyzer the worker stored: both answer alike)."""
    update = {"auto_policy": False, "max_body_bytes": 8 << 20, **TINY_CATALYZER}
    primary = settings.model_copy(update=update)
    replica = settings.model_copy(
        update={**update, "data_dir": tmp_path / "replica", "embedded_worker": False}
    )
    with TestClient(create_app(primary)) as a, TestClient(create_app(replica)) as b:
        wait_ready(a)
        wait_ready(b)
        create(a, None)
        upload(a, data.docs)
        served_build(a, start_build(a, nlist=8))
        wait_until(
            lambda: collection(b)["index"]["state"] == "ivf", what="the replica's clustering"
        )
        r = a.patch("/collections/docs", json={"quantization": {"kind": kind}})
        succeeded_job(a, r.json()["job_id"])
        for client in (a, b):  # the primary rebuilds on its own catch-up too
            info = wait_until(
                lambda c=client: (
                    (i := collection(c))["index"]["quantization"]["kind"] == kind and i
                ),
                what=f"both processes to serve {kind} lists",
            )
            assert info["count"] == N_DOCS
        for q in data.test_queries[:5]:
            assert search(b, q, nprobe=8) == search(a, q, nprobe=8)
        q = data.test_queries[0]
        assert search(b, q, nprobe=8, rerank=N_DOCS) == search(a, q, nprobe=8, rerank=N_DOCS)


def test_a_catalyzer_kind_is_created_as_float_lists(manual_client: TestClient) -> None:
    """POST with a catalyzer kind records it; the lists stay float32 until a PATCH has the
    worker train the catalyzer (there is nothing to train it on yet)."""
    create(manual_client, {"kind": "catalyzer-sign", "bits": 128})
    info = collection(manual_client)
    assert info["index"]["quantization"] == {"kind": "catalyzer-sign", "bits": 128}
    assert json_of(manual_client.get("/jobs"))["jobs"] == []


def test_patch_to_catalyzer_codes_while_searches_go_on_and_survives_a_restart(
    database_url: str, tmp_path: Path, data: debian.Dataset
) -> None:
    """The worker trains the catalyzer (torch), stores it; the API process loads it, codes
    its lists with sign bits and swaps with zero failed searches; a restart (snapshot)
    serves the same answers."""
    env = {"VECROUTE_AUTO_POLICY": "false", **TINY_CATALYZER_ENV}
    server = Server(database_url, tmp_path / "api", **env).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            create(client, None)
            upload(client, data.docs)
            served_build(client, start_build(client))
            wanted = {"kind": "catalyzer-sign", "bits": 64}
            with SearchLoop(server.url, data.test_queries) as loop:
                r = client.patch("/collections/docs", json={"quantization": wanted})
                assert r.status_code == 202, r.text
                job = succeeded_job(client, r.json()["job_id"])
                assert job["progress"] == 1.0
                # trained in the embedded worker's child process, never in the API's
                assert server.proc is not None and not maps_torch(server.proc.pid)
                info = wait_until(
                    lambda: (i := collection(client))["index"]["quantization"] == wanted and i,
                    what="the catalyzer-sign index to be served",
                )
                loop.wait_for_more(20)
            assert loop.failures == [] and loop.count > 20
            # 8 code bytes, 8 list-id bytes, the lists' id map (40), the exact vectors' id
            # map (16, and 8 to 12 for their table by id: the store's ids are dense), then
            # the exact float32 vectors.
            assert 384 * 4 + 16 < info["index"]["bytes_per_vector"] < 384 * 4 + 96
            for q in data.test_queries[:5]:
                every = search(client, q, nprobe=16, rerank=N_DOCS)
                exact = search(client, q, routing="exact")
                assert [h["id"] for h in every["hits"]] == [h["id"] for h in exact["hits"]]
            before = [search(client, q, nprobe=4) for q in data.test_queries[:5]]
        server.stop()  # writes the snapshot (with the catalyzer)
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert collection(client)["index"]["quantization"] == wanted
            assert [search(client, q, nprobe=4) for q in data.test_queries[:5]] == before
    finally:
        server.stop()


def test_the_policy_trains_a_created_catalyzer_kind_once_built(
    database_url: str, tmp_path: Path, data: debian.Dataset
) -> None:
    """POST with a catalyzer kind, then only writes: the policy builds the IVF, then has the
    worker train the catalyzer (in a child process: the API process never maps torch) and
    the lists are coded, with no PATCH."""
    env = {
        "VECROUTE_BUILD_MIN_POINTS": "1000",
        "VECROUTE_SCHEDULE_INTERVAL_S": "0.2",
        "VECROUTE_WORKER_POLL_S": "0.1",
        "VECROUTE_EXACT_VECTORS": "mmap",
        **TINY_CATALYZER_ENV,
    }
    wanted = {"kind": "catalyzer-lattice", "bits": 64}
    server = Server(database_url, tmp_path / "api", **env).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            create(client, wanted)
            upload(client, data.docs)

            def policy_quantize() -> dict[str, Any] | None:
                listed = json_of(client.get("/jobs", params={"collection": "docs"}))["jobs"]
                return next((j for j in listed if j["kind"] == "quantize"), None)

            job = finished_job(client, wait_until(policy_quantize, what="the policy's job")["id"])
            assert job["status"] == "succeeded", job
            assert job["result"]["quantization"] == wanted
            info = wait_until(
                lambda: (i := collection(client))["index"]["bytes_per_vector"] < 200 and i,
                what="the lattice codes to be served",
            )
            assert info["index"]["quantization"] == wanted and info["index"]["state"] == "ivf"
            assert server.proc is not None and not maps_torch(server.proc.pid)
            for q in data.test_queries[:5]:
                every = search(client, q, nprobe=16, rerank=N_DOCS)
                exact = search(client, q, routing="exact")
                assert every["candidates"] > 0  # ranked on codes, then re-scored
                assert [h["id"] for h in every["hits"]] == [h["id"] for h in exact["hits"]]
            kinds = [j["kind"] for j in json_of(client.get("/jobs"))["jobs"]]
            assert kinds.count("quantize") == 1  # once: the stored catalyzer serves from now on
    finally:
        server.stop()


def test_serving_catalyzer_codes_never_loads_torch() -> None:
    """The API process applies and loads catalyzers with numpy; only training uses torch
    (imported by the quantize job when it trains one)."""
    code = (
        "import sys, app.main, app.engine.catalyzer, app.engine.snapshot, app.service.indexes, "
        "worker.quantize, worker.worker; sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
