"""Paper 002's emulator over HTTP: ``POST /train-router`` with ``"kind": "emulator"``, then
``/search`` with ``"routing": "emulator"``: 409 problem+json before, exact scores after,
no deleted id and every new point reachable after writes; serving never loads torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from fastapi.testclient import TestClient

from tests.api.checked import json_of
from tests.api.progress import served_build, start_build, succeeded_job, wait_logged
from tests.engine.test_emulator import clustered
from tests.waiting import wait_until


def _search(client: TestClient, q: np.ndarray, **extra: object) -> dict:
    body = {"collection": "docs", "vector": q.tolist(), "k": 10, "routing": "emulator"} | extra
    return dict(json_of(client.post("/search", json=body)))


def test_emulator_over_http(manual_client: TestClient) -> None:
    client = manual_client
    docs, queries = clustered(5, n_docs=600, n_queries=400)
    r = client.post("/collections", json={"name": "docs", "dim": 16, "metric": "l2", "nlist": 6})
    assert r.status_code == 201, r.text
    points = [{"id": f"p{i}", "vector": v.tolist()} for i, v in enumerate(docs)]
    json_of(client.post("/index", json={"collection": "docs", "points": points}))
    served_build(client, start_build(client))

    before = client.post(
        "/search", json={"collection": "docs", "vector": queries[0].tolist(), "routing": "emulator"}
    )
    assert before.status_code == 409
    assert before.headers["content-type"].startswith("application/problem+json")

    wrong = {"collection": "docs", "kind": "linear", "architecture": "paper"}
    assert client.post("/train-router", json=wrong).status_code == 422

    train, test = queries[:300], queries[300:]
    json_of(client.post("/search/batch", json={"collection": "docs", "vectors": train.tolist()}))
    wait_logged(client, len(train))
    accepted = client.post("/train-router", json={"collection": "docs", "kind": "emulator"})
    assert accepted.status_code == 202, accepted.text
    result = succeeded_job(client, accepted.json()["job_id"])["result"]
    assert result["kind"] == "emulator" and result["level2_top5_accuracy"] >= 0.9
    wait_until(
        lambda: (
            client.post(
                "/search",
                json={"collection": "docs", "vector": test[0].tolist(), "routing": "emulator"},
            ).status_code
            == 200
        ),
        what="the emulator to be served",
    )

    for q in test[:20]:
        out = _search(client, q, nprobe=2)
        assert out["routing"] == "emulator" and out["candidates"] <= 20 < out["scanned"]
        rows = np.array([int(h["id"][1:]) for h in out["hits"]])
        exact = -((docs[rows] - q) ** 2).sum(axis=1)
        np.testing.assert_allclose([h["score"] for h in out["hits"]], exact, rtol=1e-5, atol=1e-3)

    gone = sorted({_search(client, q)["hits"][0]["id"] for q in test[:20]})
    json_of(client.post("/delete", json={"collection": "docs", "ids": gone}))
    twins = [{"id": f"new{i}", "vector": q.tolist()} for i, q in enumerate(test[:5])]
    seq = json_of(client.post("/index", json={"collection": "docs", "points": twins}))["seq"]
    for i, q in enumerate(test[:20]):
        out = _search(client, q, min_seq=seq)
        assert not {h["id"] for h in out["hits"]} & set(gone)
        if i < len(twins):
            assert out["hits"][0]["id"] == f"new{i}"

    with_filter = {"filter": {"must": [{"key": "x", "match": {"value": 1}}]}}
    r = client.post(
        "/search",
        json={"collection": "docs", "vector": test[0].tolist(), "routing": "emulator"}
        | with_filter,
    )
    assert r.status_code == 422


def test_serving_the_emulator_never_loads_torch() -> None:
    code = (
        "import sys, app.main, app.engine.emulator, app.service.emulator_search, "
        "app.store.emulators, worker.train_emulator; sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
