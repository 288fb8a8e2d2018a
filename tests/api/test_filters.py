"""Filtered search over HTTP (the fast path serves /search): results equal exact filtered
search by numpy, k hits whenever k match, payload indexes declared and kept in step."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from tests.api.progress import collection, served_build, start_build
from tests.waiting import wait_until

PROBLEM = "application/problem+json"
DIM = 8
N = 400
K = 10


def _points(rng: np.random.Generator, start: int, n: int) -> tuple[np.ndarray, list[dict]]:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    points = [
        {
            "id": f"p{start + i}",
            "vector": v.tolist(),
            "payload": {
                "bucket": int(rng.integers(0, 100)),
                "lang": str(rng.choice(["en", "de", "fr"])),
                "tags": [str(t) for t in rng.choice(["a", "b", "c"], size=rng.integers(0, 3))],
            },
        }
        for i, v in enumerate(x)
    ]
    return x, points


class Oracle:
    """The collection's current state in numpy: exact filtered top-k by brute force."""

    def __init__(self) -> None:
        self.points: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

    def index(self, client: TestClient, x: np.ndarray, points: list[dict]) -> None:
        r = client.post("/index", json={"collection": "docs", "points": points})
        assert r.status_code == 200, r.text
        for v, p in zip(x, points, strict=True):
            self.points[p["id"]] = (v, p["payload"])

    def top(self, q: np.ndarray, allowed: Any, k: int = K) -> list[str]:
        ids = [i for i, (_, payload) in self.points.items() if allowed(payload)]
        scores = np.array([self.points[i][0] @ q for i in ids])
        return [ids[j] for j in np.argsort(-scores, kind="stable")[:k]]


def _bucket_below(limit: int) -> tuple[dict, Any]:
    f = {"must": [{"key": "bucket", "range": {"lt": limit}}]}
    return f, lambda p: p["bucket"] < limit


def _searched(client: TestClient, path: str, body: dict) -> dict:
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_filtered_search_equals_exact_filtered_search(client: TestClient) -> None:
    r = client.post(
        "/collections",
        json={"name": "docs", "dim": DIM, "payload_indexes": {"bucket": "integer"}},
    )
    assert r.status_code == 201 and r.json()["payload_indexes"] == {"bucket": "integer"}
    rng = np.random.default_rng(11)
    oracle = Oracle()
    oracle.index(client, *_points(rng, 0, N))
    queries = rng.standard_normal((5, DIM)).astype(np.float32)
    f, allowed = _bucket_below(5)
    out = _searched(
        client, "/search", {"collection": "docs", "vector": queries[0].tolist(), "filter": f}
    )
    assert out["plan"] == "exact" and out["matches"] == sum(
        allowed(p) for _, p in oracle.points.values()
    )
    assert [h["id"] for h in out["hits"]] == oracle.top(queries[0], allowed)

    # this build, not one the policy may have started at 64 points
    nlist = served_build(client, start_build(client, nlist=16))["index"]["nlist"]
    plans = set()
    for limit, nprobe in ((50, 2), (10, 2), (1, 2), (50, None)):
        f, allowed = _bucket_below(limit)
        body = {"collection": "docs", "vectors": queries.tolist(), "k": K, "filter": f}
        if nprobe is not None:
            body["nprobe"] = nprobe
        out = _searched(client, "/search/batch", body)
        plans.add(out["plan"])
        matches = sum(allowed(p) for _, p in oracle.points.values())
        assert out["matches"] == matches
        for q, result in zip(queries, out["results"], strict=True):
            got = [h["id"] for h in result["hits"]]
            assert len(got) == min(K, matches)
            assert all(allowed(oracle.points[i][1]) for i in got)
            expected = oracle.top(q, allowed)
            if out["plan"] == "exact":
                assert got == expected and out["nprobe"] is None
            else:
                assert out["nprobe"] >= 2 and out["routing"] == "centroid"
                assert len(set(got) & set(expected)) >= K // 2
    assert plans == {"exact", "ivf"}
    exact = _searched(
        client,
        "/search/batch",
        {"collection": "docs", "vectors": queries.tolist(), "routing": "exact", "filter": f},
    )
    assert [[h["id"] for h in r["hits"]] for r in exact["results"]] == [
        oracle.top(q, allowed) for q in queries
    ]
    assert nlist == 16


def test_writes_and_redeclared_indexes_keep_filters_exact(client: TestClient) -> None:
    """Upsert, replace (new payloads), delete, then declare other indexes: still exact."""
    assert client.post("/collections", json={"name": "docs", "dim": DIM}).status_code == 201
    rng = np.random.default_rng(12)
    oracle = Oracle()
    q = rng.standard_normal(DIM).astype(np.float32)
    f = {
        "must": [{"key": "lang", "match": {"any": ["en", "de"]}}],
        "should": [
            {"key": "tags", "match": {"value": "a"}},
            {"key": "bucket", "range": {"gte": 90}},
        ],
        "must_not": [{"key": "bucket", "range": {"lt": 10}}],
    }

    def allowed(p: dict) -> bool:
        return (
            p["lang"] in ("en", "de")
            and ("a" in p["tags"] or p["bucket"] >= 90)
            and not p["bucket"] < 10
        )

    def search_is_exact() -> None:
        out = _searched(
            client, "/search", {"collection": "docs", "vector": q.tolist(), "k": 20, "filter": f}
        )
        assert [h["id"] for h in out["hits"]] == oracle.top(q, allowed, 20)
        assert out["matches"] == sum(allowed(p) for _, p in oracle.points.values())

    oracle.index(client, *_points(rng, 0, 200))
    search_is_exact()  # the filter's bitmap is cached now: each write below must outdate it
    oracle.index(client, *_points(rng, 150, 100))  # 50 replaced with new payloads
    search_is_exact()
    gone = [f"p{i}" for i in range(0, 60, 3)]
    r = client.post("/delete", json={"collection": "docs", "ids": gone})
    assert r.status_code == 200 and r.json()["deleted"] == 20, r.text
    for pid in gone:
        del oracle.points[pid]
    for fields in ({}, {"lang": "keyword", "bucket": "integer"}, {"tags": "keyword"}):
        r = client.put("/collections/docs/payload-indexes", json={"fields": fields})
        assert r.status_code == 200 and r.json()["payload_indexes"] == fields
        search_is_exact()
    assert collection(client)["payload_indexes"] == {"tags": "keyword"}


def test_bad_filters_and_declarations_are_problems_and_documented(client: TestClient) -> None:
    body = {"name": "docs", "dim": 2, "payload_indexes": {"lang": "keyword", "n": "integer"}}
    assert client.post("/collections", json=body).status_code == 201
    point = {"id": "a", "vector": [1, 0], "payload": {"lang": "en", "n": 1}}
    assert client.post("/index", json={"collection": "docs", "points": [point]}).status_code == 200
    bad_filters = [
        {"must": [{"key": "lang", "regex": "e.*"}]},  # unknown operator
        {"must": [{"key": "lang", "match": {"value": 1}}]},  # keyword field, integer value
        {"must": [{"key": "lang", "range": {"gt": 1}}]},  # range on a keyword field
        {"must": [{"key": "n", "match": {"value": "1"}}]},  # integer field, string value
        {"must": [{"key": "x", "match": {"value": 1.5}}]},  # decimal match value
        {"must": [{"key": "x", "match": {"any": ["a", 1]}}]},  # mixed any-of
        {"must": [{"key": "x", "range": {"gt": "1"}}]},  # string bound
        {"must": [{"key": "x", "range": {}}]},  # no bound
        {"must": [{"key": "x", "match": {"value": 1}, "exists": True}]},  # two operators
        {"filter": []},  # unknown clause
        {"must": {"key": "x", "exists": True}},  # clause not a list
    ]
    for f in bad_filters:
        for path, vectors in (
            ("/search", {"vector": [1, 0]}),
            ("/search/batch", {"vectors": [[1, 0]]}),
        ):
            r = client.post(path, json={"collection": "docs", **vectors, "filter": f})
            assert r.status_code == 422, (f, r.text)
            assert r.headers["content-type"] == PROBLEM and r.json()["type"].endswith(
                "invalid-request"
            )
    r = client.put("/collections/docs/payload-indexes", json={"fields": {"lang": "text"}})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    # An index never holds a value its type cannot: a filter on it answers as a scan would.
    r = client.put("/collections/docs/payload-indexes", json={"fields": {"lang": "integer"}})
    assert r.status_code == 422 and "'en' is not one" in r.json()["detail"], r.text
    misfits = [{"lang": 3}, {"n": "2"}, {"n": [1, "two"]}, {"lang": True}]
    for payload in misfits:
        odd = {"id": "b", "vector": [0, 1], "payload": payload}
        r = client.post("/index", json={"collection": "docs", "points": [point, odd]})
        assert r.status_code == 422 and "is indexed as" in r.json()["detail"], r.text
    assert collection(client)["payload_indexes"] == body["payload_indexes"]
    assert collection(client)["count"] == 1
    r = client.put("/collections/nope/payload-indexes", json={"fields": {}})
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = client.post("/collections", json={**body, "name": "d2", "payload_indexes": {"": "bool"}})
    assert r.status_code == 422
    ok = _searched(
        client,
        "/search",
        {
            "collection": "docs",
            "vector": [1, 0],
            "filter": {"must": [{"key": "n", "match": {"value": 1}}]},
        },
    )
    assert [h["id"] for h in ok["hits"]] == ["a"] and ok["matches"] == 1
    r = client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    schemas = spec["components"]["schemas"]
    assert schemas["Filter"]["examples"] and "FieldCondition" in schemas
    assert "filter" in schemas["SearchRequest"]["properties"]
    assert "/collections/{name}/payload-indexes" in spec["paths"]


def test_a_repeated_filter_earns_a_view_that_no_write_outlives(client: TestClient) -> None:
    """Searched again and again, a filter gets a copy of its matching vectors (counted in
    /metrics): same hits as before it; a write that adds a better match shows at once."""
    assert client.post("/collections", json={"name": "docs", "dim": DIM}).status_code == 201
    rng = np.random.default_rng(13)
    oracle = Oracle()
    oracle.index(client, *_points(rng, 0, N))
    served_build(client, start_build(client, nlist=16))  # nprobe 16 below probes every list
    q = rng.standard_normal(DIM).astype(np.float32)
    f, allowed = _bucket_below(50)
    body = {"collection": "docs", "vector": q.tolist(), "filter": f, "nprobe": 16}

    def views_held() -> float:
        r = client.get("/metrics")
        assert r.status_code == 200
        line = next(s for s in r.text.splitlines() if s.startswith("vecroute_filter_views "))
        return float(line.rsplit(" ", 1)[1])

    def hit_ids() -> list[str]:
        return [h["id"] for h in _searched(client, "/search", body)["hits"]]

    def search_until_a_view(expected: list[str]) -> None:
        """Search again and again, always finding ``expected``, until a view is held."""

        def viewed_after_searching() -> bool:
            if views_held() > 0:
                return True
            for _ in range(20):
                assert hit_ids() == expected
            return False

        wait_until(viewed_after_searching, what="a view of the repeated filter")

    assert views_held() == 0
    expected = oracle.top(q, allowed)
    search_until_a_view(expected)
    assert hit_ids() == expected
    best = (10 * q / np.linalg.norm(q)).astype(np.float32)
    point = {"id": "best", "vector": best.tolist(), "payload": {"bucket": 0}}
    oracle.index(client, best[None], [point])
    hits = _searched(client, "/search", body)["hits"]
    assert [h["id"] for h in hits] == oracle.top(q, allowed) and hits[0]["id"] == "best"
    search_until_a_view(oracle.top(q, allowed))  # the filter earns a view of the new state
    assert client.delete("/collections/docs").status_code == 204
    assert views_held() == 0  # a deleted collection's views go with it
