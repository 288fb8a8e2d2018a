"""The shapes of API.md, end to end through the app (store + index)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.progress import collection, finished_job, served_ivf, start_build

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
    listed = client.get("/collections")
    assert listed.status_code == 200
    assert [c["name"] for c in listed.json()["collections"]] == ["docs"]
    assert collection(client)["name"] == "docs"
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
    assert r.status_code == 200, r.text
    out = r.json()
    assert [h["id"] for h in out["hits"]] == ["7", "a1"]
    assert out["hits"][1]["payload"] == {"lang": "en"}
    assert out["routing"] == "exact" and out["router_version"] is None
    assert out["hits"][0]["score"] == pytest.approx(0.7, abs=1e-6)
    r = client.post(
        "/search/batch",
        json={"collection": "docs", "vectors": [[1, 0], [0, -1]], "k": 1, "with_payload": False},
    )
    assert r.status_code == 200, r.text
    batch = r.json()
    assert [r["hits"][0]["id"] for r in batch["results"]] == ["7", "a1"]
    assert "payload" not in batch["results"][0]["hits"][0]
    r = client.get("/collections/docs/points/a1")
    assert r.status_code == 200, r.text
    point = r.json()
    assert point["id"] == "a1" and point["payload"] == {"lang": "en"}
    assert np.allclose(point["vector"], [0.1, 0.2])
    r = client.post("/delete", json={"collection": "docs", "ids": ["a1", "nope"]})
    assert r.status_code == 200, r.text
    deleted = r.json()
    assert deleted["deleted"] == 1 and deleted["seq"] > body["seq"]
    # No ids: nothing written, no write number taken; the seq is the last one applied.
    r = client.post("/delete", json={"collection": "docs", "ids": []})
    assert r.status_code == 200, r.text
    assert r.json() == {"deleted": 0, "seq": deleted["seq"]}
    assert client.post("/delete", json={"collection": "nope", "ids": []}).status_code == 404
    assert client.get("/collections/docs/points/a1").status_code == 404
    r = client.post("/search", json={"collection": "docs", "vector": [1, 1]})
    assert r.status_code == 200, r.text
    assert [h["id"] for h in r.json()["hits"]] == ["7"]


def test_auto_build_then_ivf_search_agrees_with_exact(client: TestClient) -> None:
    _create(client, dim=8)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    points = [{"id": f"p{i}", "vector": v.tolist()} for i, v in enumerate(x)]
    assert client.post("/index", json={"collection": "docs", "points": points}).status_code == 200
    info = served_ivf(client)  # the policy's build: 200 points reach build_min_points
    nlist = info["index"]["nlist"]
    assert info["index"]["clustering_version"] == 1 and nlist >= 1
    q = x[:5].tolist()
    r = client.post(
        "/search/batch", json={"collection": "docs", "vectors": q, "k": 3, "routing": "exact"}
    )
    assert r.status_code == 200, r.text
    exact = r.json()
    r = client.post(
        "/search/batch", json={"collection": "docs", "vectors": q, "k": 3, "nprobe": nlist}
    )
    assert r.status_code == 200, r.text
    full = r.json()
    assert full["routing"] == "centroid" and full["nprobe"] == nlist
    assert exact["results"] == full["results"]
    r = client.post("/search", json={"collection": "docs", "vector": q[0], "nprobe": nlist + 1})
    assert r.status_code == 422
    r = client.post("/search", json={"collection": "docs", "vector": q[0], "routing": "learned"})
    assert r.status_code == 409


def test_build_and_job(client: TestClient) -> None:
    _create(client, dim=2)
    pts = [{"id": i, "vector": [float(i), 1.0]} for i in range(100)]
    assert client.post("/index", json={"collection": "docs", "points": pts}).status_code == 200
    job = finished_job(client, start_build(client, nlist=4))
    assert job["status"] == "succeeded" and job["kind"] == "build", job
    assert job["collection"] == "docs" and job["progress"] == 1.0
    assert job["result"]["nlist"] == 4
    assert client.get("/jobs/nope").status_code == 404


def test_train_router_needs_logged_queries(client: TestClient) -> None:
    _create(client, dim=2)
    point = {"id": "a", "vector": [1, 0]}
    r = client.post("/index", json={"collection": "docs", "points": [point]})
    assert r.status_code == 200, r.text
    r = client.post("/train-router", json={"collection": "docs"})
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    for _ in range(3):
        r = client.post("/search", json={"collection": "docs", "vector": [1, 0], "log": False})
        assert r.status_code == 200, r.text
    assert client.post("/train-router", json={"collection": "docs"}).status_code == 409
    for _ in range(5):
        r = client.post("/search", json={"collection": "docs", "vector": [1, 0]})
        assert r.status_code == 200, r.text
    # train-router flushes the query log before counting: the five are there at once.
    r = client.post("/train-router", json={"collection": "docs", "kind": "linear"})
    assert r.status_code == 202, r.text
    job = finished_job(client, r.json()["job_id"])
    # One point, not clustered: nothing to route, so the job fails and says why.
    assert job["kind"] == "train-router" and job["status"] == "failed"
    assert "no clustering" in job["error"], job


def test_operations(client: TestClient) -> None:
    healthz = client.get("/healthz")
    assert healthz.status_code == 200 and healthz.json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] and ready.json()["store"] and ready.json()["indexes_loaded"]
    assert client.get("/collections").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "vecroute_http_request_seconds" in metrics.text
    assert "vecroute_applied_seq" in metrics.text
    r = client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    ops = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert ops == {
        "create_collection",
        "list_collections",
        "get_collection",
        "update_collection",
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
