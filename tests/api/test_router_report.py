"""``GET /collections/{name}/router/report`` (and .svg): what the worker measured, shown."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.progress import served_build, start_build, succeeded_job, wait_logged
from tests.waiting import wait_until

DIM = 8


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
    r = client.post("/collections", json={"name": "docs", "dim": DIM, "nlist": 8})
    assert r.status_code == 201, r.text
    empty = _report(client)
    assert empty["clustering_version"] is None and empty["evaluation"] is None
    assert empty["centroid"] is None and empty["learned"] is None and empty["nprobe"] == []
    # Logged before the build, so the build can measure centroid recall on them: the build
    # reads the store, so the test waits until every logged query is there.
    logged = {"collection": "docs", "vectors": queries.tolist(), "k": 10}
    r = client.post("/search/batch", json=logged)
    assert r.status_code == 200, r.text
    points = [{"id": i, "vector": v} for i, v in enumerate(docs.tolist())]
    assert client.post("/index", json={"collection": "docs", "points": points}).status_code == 200
    wait_logged(client, len(queries))
    build = start_build(client)
    served_build(client, build)
    assert succeeded_job(client, build)["result"]["recall_table_queries"] == len(queries)
    built = _report(client)
    assert built["evaluation"]["source"] == "build" and built["learned"] is None
    assert built["centroid"]["top1_accuracy"] is None
    assert len(built["centroid"]["recall"]) == len(built["nprobe"]) and built["nprobe"][-1] == 8
    assert built["centroid"]["recall"][-1] == pytest.approx(1.0)  # every list probed

    r = client.post("/train-router", json={"collection": "docs"})
    assert r.status_code == 202, r.text
    result = succeeded_job(client, r.json()["job_id"])["result"]
    active = result["router_version"] if result["activated"] else None
    # The evaluation is read from the store; the active version from this process's copy of
    # the collection, which catches up with the activation in the background.
    trained = wait_until(
        lambda: (report := _report(client))["active_router_version"] == active and report,
        what=f"router {active} to be active in the report",
    )
    evaluation = trained["evaluation"]
    assert evaluation["source"] == "train-router"
    assert evaluation["router_version"] == result["router_version"]
    assert evaluation["activated"] == result["activated"]
    assert evaluation["heldout_queries"] == result["heldout_queries"] and evaluation["k"] == 10
    assert trained["nprobe"] == result["nprobes"]
    assert trained["learned"]["recall"] == result["heldout_recall"]["new"]
    assert trained["learned"]["top1_accuracy"] == result["heldout_top1_accuracy"]["new"]
    # Centroid routing served during training, so the gate's "current" is the centroid.
    assert trained["centroid"]["recall"] == result["heldout_recall"]["current"]

    svg = client.get("/collections/docs/router/report.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.count("<polyline") == 4
    missing = client.get("/collections/nope/router/report")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
