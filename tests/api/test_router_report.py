"""``GET /collections/{name}/router/report`` (and .svg): what the worker measured, shown."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

DIM = 8


def _wait(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _report(client: TestClient) -> dict:
    r = client.get("/collections/docs/router/report")
    assert r.status_code == 200, r.text
    return r.json()


def test_report_follows_build_then_training(manual_client: TestClient) -> None:
    client = manual_client
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(8, DIM)) * 4
    docs = centres[rng.integers(0, 8, 400)] + rng.normal(size=(400, DIM))
    queries = centres[rng.integers(0, 8, 240)] + rng.normal(size=(240, DIM))
    client.post("/collections", json={"name": "docs", "dim": DIM, "nlist": 8})
    empty = _report(client)
    assert empty["clustering_version"] is None and empty["evaluation"] is None
    assert empty["centroid"] is None and empty["learned"] is None and empty["nprobe"] == []
    # Logged before the build, so the build can measure centroid recall on them.
    client.post("/search/batch", json={"collection": "docs", "vectors": queries.tolist(), "k": 10})
    points = [{"id": i, "vector": v} for i, v in enumerate(docs.tolist())]
    assert client.post("/index", json={"collection": "docs", "points": points}).status_code == 200
    client.app.state.service.query_log.flush()  # type: ignore[attr-defined]
    client.post("/collections/docs/build")
    _wait(lambda: _report(client)["evaluation"] is not None, "the build's measurement")
    built = _report(client)
    assert built["evaluation"]["source"] == "build" and built["learned"] is None
    assert built["centroid"]["top1_accuracy"] is None
    assert len(built["centroid"]["recall"]) == len(built["nprobe"]) and built["nprobe"][-1] == 8
    assert built["centroid"]["recall"][-1] == pytest.approx(1.0)  # every list probed

    job = client.post("/train-router", json={"collection": "docs"}).json()["job_id"]
    _wait(lambda: client.get(f"/jobs/{job}").json()["status"] == "succeeded", "training")
    result = client.get(f"/jobs/{job}").json()["result"]
    _wait(lambda: _report(client)["evaluation"]["source"] == "train-router", "the report")
    trained = _report(client)
    evaluation = trained["evaluation"]
    assert evaluation["router_version"] == result["router_version"]
    assert evaluation["activated"] == result["activated"]
    assert evaluation["heldout_queries"] == result["heldout_queries"] and evaluation["k"] == 10
    assert trained["nprobe"] == result["nprobes"]
    assert trained["learned"]["recall"] == result["heldout_recall"]["new"]
    assert trained["learned"]["top1_accuracy"] == result["heldout_top1_accuracy"]["new"]
    # Centroid routing served during training, so the gate's "current" is the centroid.
    assert trained["centroid"]["recall"] == result["heldout_recall"]["current"]
    assert trained["active_router_version"] == (
        result["router_version"] if result["activated"] else None
    )

    svg = client.get("/collections/docs/router/report.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.count("<polyline") == 4
    missing = client.get("/collections/nope/router/report")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
