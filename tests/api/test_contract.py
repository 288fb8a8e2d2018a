"""The shapes of API.md, end to end through the app (store + index)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"


def _create(client: TestClient, name: str = "docs", dim: int = 4, **extra) -> dict:
    r = client.post("/collections", json={"name": name, "dim": dim, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def test_collection_lifecycle(client: TestClient) -> None:
    info = _create(client, metric="cosine", nlist=8, clustering="spherical")
    assert info["name"] == "docs" and info["dim"] == 4 and info["metric"] == "cosine"
    assert info["count"] == 0 and info["index"]["state"] == "flat"
    assert info["router"] == {"kind": "centroid", "version": None}
    r = client.post("/collections", json={"name": "docs", "dim": 4})
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    assert [c["name"] for c in client.get("/collections").json()["collections"]] == ["docs"]
    assert client.get("/collections/docs").json()["name"] == "docs"
    assert client.delete("/collections/docs").status_code == 204
    assert client.get("/collections/docs").status_code == 404
    assert client.delete("/collections/docs").status_code == 404


def test_index_search_get_delete(client: TestClient) -> None:
    _create(client, dim=2)
    r = client.post(
        "/index",
        json={
            "collection": "docs",
            "points": [
                {"id": "a1", "vector": [0.1, 0.2], "payload": {"lang": "en"}},
                {"id": 7, "vector": [0.3, 0.4]},
            ],
        },
    )
    assert r.status_code == 200
    body = r.json()
    assert body["upserted"] == 2 and body["seq"] >= 2
    r = client.post("/search", json={"collection": "docs", "vector": [1, 1], "k": 5})
    out = r.json()
    assert [h["id"] for h in out["hits"]] == ["7", "a1"]
    assert out["hits"][1]["payload"] == {"lang": "en"}
    assert out["routing"] == "exact" and out["router_version"] is None
    assert out["hits"][0]["score"] == pytest.approx(0.7, abs=1e-6)
    batch = client.post(
        "/search/batch",
        json={"collection": "docs", "vectors": [[1, 0], [0, -1]], "k": 1, "with_payload": False},
    ).json()
    assert [r["hits"][0]["id"] for r in batch["results"]] == ["7", "a1"]
    assert "payload" not in batch["results"][0]["hits"][0]
    point = client.get("/collections/docs/points/a1").json()
    assert point["id"] == "a1" and point["payload"] == {"lang": "en"}
    assert np.allclose(point["vector"], [0.1, 0.2])
    r = client.post("/delete", json={"collection": "docs", "ids": ["a1", "nope"]})
    assert r.json()["deleted"] == 1 and r.json()["seq"] > body["seq"]
    assert client.get("/collections/docs/points/a1").status_code == 404
    hits = client.post("/search", json={"collection": "docs", "vector": [1, 1]}).json()["hits"]
    assert [h["id"] for h in hits] == ["7"]


def test_auto_build_then_ivf_search_agrees_with_exact(client: TestClient) -> None:
    _create(client, dim=8)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    points = [{"id": f"p{i}", "vector": v.tolist()} for i, v in enumerate(x)]
    assert client.post("/index", json={"collection": "docs", "points": points}).status_code == 200
    deadline = time.monotonic() + 30
    while client.get("/collections/docs").json()["index"]["state"] != "ivf":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    info = client.get("/collections/docs").json()
    nlist = info["index"]["nlist"]
    assert info["index"]["clustering_version"] == 1 and nlist >= 1
    q = x[:5].tolist()
    exact = client.post(
        "/search/batch", json={"collection": "docs", "vectors": q, "k": 3, "routing": "exact"}
    ).json()
    full = client.post(
        "/search/batch", json={"collection": "docs", "vectors": q, "k": 3, "nprobe": nlist}
    ).json()
    assert full["routing"] == "centroid" and full["nprobe"] == nlist
    assert exact["results"] == full["results"]
    r = client.post("/search", json={"collection": "docs", "vector": q[0], "nprobe": nlist + 1})
    assert r.status_code == 422
    r = client.post("/search", json={"collection": "docs", "vector": q[0], "routing": "learned"})
    assert r.status_code == 409


def test_build_and_job(client: TestClient) -> None:
    _create(client, dim=2)
    pts = [{"id": i, "vector": [float(i), 1.0]} for i in range(100)]
    client.post("/index", json={"collection": "docs", "points": pts})
    r = client.post("/collections/docs/build", json={"nlist": 4})
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 30
    while (job := client.get(f"/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["status"] == "succeeded" and job["kind"] == "build", job
    assert job["collection"] == "docs" and job["progress"] == 1.0
    assert job["result"]["nlist"] == 4
    assert client.get("/jobs/nope").status_code == 404


def test_train_router_needs_logged_queries(client: TestClient) -> None:
    _create(client, dim=2)
    client.post("/index", json={"collection": "docs", "points": [{"id": "a", "vector": [1, 0]}]})
    r = client.post("/train-router", json={"collection": "docs"})
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    for _ in range(3):
        client.post("/search", json={"collection": "docs", "vector": [1, 0], "log": False})
    assert client.post("/train-router", json={"collection": "docs"}).status_code == 409
    for _ in range(5):
        client.post("/search", json={"collection": "docs", "vector": [1, 0]})
    r = client.post("/train-router", json={"collection": "docs", "kind": "linear"})
    assert r.status_code == 202
    job = client.get(f"/jobs/{r.json()['job_id']}").json()
    assert job["kind"] == "train-router" and job["status"] in ("queued", "running", "failed")


def test_operations(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["store"] and ready["indexes_loaded"]
    client.get("/collections")
    text = client.get("/metrics").text
    assert "vecroute_http_request_seconds" in text and "vecroute_applied_seq" in text
    spec = client.get("/openapi.json").json()
    ops = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert ops == {
        "create_collection",
        "list_collections",
        "get_collection",
        "delete_collection",
        "build_collection",
        "set_payload_indexes",
        "index_points",
        "delete_points",
        "get_point",
        "list_points",
        "search",
        "search_batch",
        "train_router",
        "get_job",
        "list_jobs",
        "get_router_report",
        "get_router_report_svg",
        "healthz",
        "readyz",
        "metrics",
    }
    assert "SearchRequest" in spec["components"]["schemas"]
