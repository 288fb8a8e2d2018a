"""``target_recall`` asks for a recall instead of an nprobe, and says clearly when it cannot."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from tests.api.progress import served_build, start_build


def _collection(client: TestClient) -> list[list[float]]:
    r = client.post("/collections", json={"name": "docs", "dim": 4, "metric": "l2"})
    assert r.status_code == 201, r.text
    x = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
    points = [{"id": str(i), "vector": v.tolist()} for i, v in enumerate(x)]
    assert client.post("/index", json={"collection": "docs", "points": points}).status_code == 200
    return x[:2].tolist()


def test_target_recall_before_any_table_is_a_409_problem(client: TestClient) -> None:
    q = _collection(client)
    info = served_build(client, start_build(client, nlist=4))
    assert info["recall_table"] is None  # no query was logged before the build
    r = client.post("/search", json={"collection": "docs", "vector": q[0], "target_recall": 0.9})
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "no held-out recall table" in r.json()["detail"]


def test_target_recall_excludes_nprobe_and_exact(client: TestClient) -> None:
    q = _collection(client)
    both = {"collection": "docs", "vector": q[0], "target_recall": 0.9, "nprobe": 2}
    assert client.post("/search", json=both).status_code == 422
    exact = {"collection": "docs", "vector": q[0], "target_recall": 0.9, "routing": "exact"}
    assert client.post("/search", json=exact).status_code == 422
    out_of_range = {"collection": "docs", "vector": q[0], "target_recall": 1.5}
    assert client.post("/search", json=out_of_range).status_code == 422
