"""Every rejected request is problem+json and leaves the store and the index unchanged."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.api.checked import json_of

JSON = {"Content-Type": "application/json"}
GOOD = {"id": "ok", "vector": [1.0, 2.0]}
ONE = {"id": 1, "vector": [0.0, 1.0]}  # stored as "1": what a delete of true once removed
NUL_ID = {"id": "\x00", "vector": [1.0, 2.0]}
HUGE = {"id": "huge", "vector": [1e20, 2.0]}

BAD_REQUESTS = [
    ("post", "/collections", {"json": {"name": "bad name!", "dim": 2}}, 422),
    ("post", "/collections", {"json": {"name": "x", "dim": 0}}, 422),
    ("post", "/collections", {"json": {"name": "x", "dim": 2, "metric": "hamming"}}, 422),
    ("post", "/collections", {"content": b"{not json", "headers": JSON}, 400),
    # Shards and replicas need a cluster (API.md, "Shards"): this service runs without one.
    ("post", "/collections", {"json": {"name": "x", "dim": 2, "shards": 2}}, 409),
    ("post", "/collections", {"json": {"name": "x", "dim": 2, "replicas": 3}}, 409),
    ("post", "/collections", {"json": {"name": "x", "dim": 2, "shards": 0}}, 422),
    ("post", "/collections", {"json": {"name": "x", "dim": 2, "replicas": 0}}, 422),
    ("post", "/index", {"json": {"collection": "docs", "points": []}}, 422),
    ("post", "/index", {"json": {"collection": "nope", "points": [GOOD]}}, 404),
    (
        "post",
        "/index",
        {"json": {"collection": "docs", "points": [GOOD, {"id": "b", "vector": [1.0]}]}},
        422,
    ),
    (
        "post",
        "/index",
        {"json": {"collection": "docs", "points": [GOOD, {"id": "", "vector": [1, 2]}]}},
        422,
    ),
    (
        "post",
        "/index",
        {"json": {"collection": "docs", "points": [GOOD, {"id": "x" * 257, "vector": [1, 2]}]}},
        422,
    ),
    (
        "post",
        "/index",
        {"json": {"collection": "docs", "points": [GOOD, {"id": True, "vector": [1, 2]}]}},
        422,
    ),
    (
        "post",
        "/index",
        {"json": {"collection": "docs", "points": [GOOD, {"id": "s", "vector": ["1", 2]}]}},
        422,
    ),
    (
        "post",
        "/index",
        {"json": {"collection": "docs", "points": [GOOD, {"id": "s", "vector": [1e39, 2]}]}},
        422,
    ),
    (
        "post",
        "/index",
        {"content": b'{"collection":"docs","points":[{"id":"n","vector":[NaN,1]}]}'},
        400,
    ),
    (
        "post",
        "/index",
        {"content": b'{"collection":"docs","points":[{"id":"n","vector":[Infinity,1]}]}'},
        400,
    ),
    (
        "post",
        "/index",
        {
            "json": {
                "collection": "docs",
                "points": [GOOD, {"id": "p", "vector": [1, 2], "payload": 3}],
            }
        },
        422,
    ),
    ("post", "/index", {"json": {"collection": "docs", "points": [GOOD] * 11}}, 422),
    ("post", "/index", {"content": b"[1, 2]"}, 400),
    (
        "post",
        "/index",
        {"content": b'{"collection": "docs", "points": [' + b"1," * 200_000 + b"1]}"},
        413,
    ),
    ("post", "/search", {"json": {"collection": "docs", "vector": [1, 2], "k": 0}}, 422),
    ("post", "/search", {"json": {"collection": "docs", "vector": [1, 2], "k": 1001}}, 422),
    ("post", "/search", {"json": {"collection": "docs", "vector": [1, 2], "nprobe": 0}}, 422),
    (
        "post",
        "/search",
        {"json": {"collection": "docs", "vector": [1, 2], "routing": "magic"}},
        422,
    ),
    ("post", "/search", {"json": {"collection": "docs", "vector": [1, 2, 3]}}, 422),
    ("post", "/search", {"json": {"collection": "docs", "vector": "12"}}, 422),
    ("post", "/search", {"json": {"collection": "docs", "vector": [1, 2], "bogus": 1}}, 422),
    ("post", "/search/batch", {"json": {"collection": "docs", "vectors": []}}, 422),
    ("post", "/search/batch", {"json": {"collection": "docs", "vectors": [[1, 2], [1]]}}, 422),
    ("post", "/delete", {"json": {"collection": "docs", "ids": "ok"}}, 422),
    ("post", "/train-router", {"json": {"collection": "docs", "kind": "forest"}}, 422),
    # Found by fuzzing (tests/api/test_fuzz.py): these were 500s on PostgreSQL (NUL in
    # text, 32-bit columns) or answered with null scores (float32 overflow).
    ("post", "/index", {"json": {"collection": "docs", "points": [NUL_ID]}}, 422),
    ("post", "/delete", {"json": {"collection": "docs", "ids": ["ok\x00"]}}, 422),
    ("get", "/collections/docs/points/ok%00", {}, 422),
    ("post", "/index", {"json": {"collection": "docs", "points": [HUGE]}}, 422),
    ("post", "/search", {"json": {"collection": "docs", "vector": [1e30, 1e30]}}, 422),
    ("post", "/collections", {"json": {"name": "x", "dim": 2, "nlist": 2**40}}, 422),
    ("post", "/collections", {"json": {"name": "x", "dim": 2, "default_nprobe": 2**40}}, 422),
    ("post", "/collections/docs/build", {"json": {"seed": 2**40}}, 422),
    ("post", "/train-router", {"json": {"collection": "docs", "k": 10**6}}, 422),
    # Ids: a 3.0 is the id "3", an integer beyond 64 bits is refused (parsers read it as a
    # float, which loses digits), as in /index.
    ("post", "/delete", {"content": b'{"collection":"docs","ids":[18446744073709551616]}'}, 422),
    ("post", "/delete", {"json": {"collection": "docs", "ids": [1.5]}}, 422),
    # JSON true is no id and no number, "2" no k (found by a fresh user's audit: the delete
    # removed point "1", and true in a vector was stored as 1).
    ("post", "/delete", {"json": {"collection": "docs", "ids": [True]}}, 422),
    (
        "post",
        "/index",
        {"json": {"collection": "docs", "points": [GOOD, {"id": "b", "vector": [1, True]}]}},
        422,
    ),
    ("post", "/search", {"json": {"collection": "docs", "vector": [1, True]}}, 422),
    (
        "post",
        "/search/batch",
        {"json": {"collection": "docs", "vectors": [[1, 2], [0, False]]}},
        422,
    ),
    ("post", "/search", {"json": {"collection": "docs", "vector": [1, 2], "k": "2"}}, 422),
    ("post", "/search", {"json": {"collection": "docs", "vector": [1, 2], "k": True}}, 422),
    ("post", "/search", {"json": {"collection": "docs", "vector": [1, 2], "k": 2.5}}, 422),
    ("post", "/search", {"json": {"collection": "docs", "vector": [1, 2], "nprobe": True}}, 422),
    (
        "post",
        "/search",
        {"json": {"collection": "docs", "vector": [1, 2], "with_payload": "yes"}},
        422,
    ),
    ("post", "/collections", {"json": {"name": "x", "dim": "2"}}, 422),
    # A body declared as anything but JSON (none declared is read as JSON).
    (
        "post",
        "/index",
        {
            "content": b'{"collection":"docs","points":[{"id":"t","vector":[1,2]}]}',
            "headers": {"Content-Type": "text/plain"},
        },
        415,
    ),
    (
        "post",
        "/search",
        {
            "content": b'{"collection":"docs","vector":[1,2]}',
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        415,
    ),
    ("get", "/collections/docs/points/missing", {}, 404),
    ("get", "/no/such/route", {}, 404),
    ("put", "/search", {}, 405),
]


@pytest.fixture
def small_client(settings: Settings):
    limited = settings.model_copy(update={"max_batch_points": 10})
    with TestClient(create_app(limited)) as c:
        from tests.api.conftest import wait_ready

        wait_ready(c)
        assert c.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
        points = {"collection": "docs", "points": [GOOD, ONE]}
        assert c.post("/index", json=points).status_code == 200
        yield c


def _state(c: TestClient) -> tuple:
    info = json_of(c.get("/collections/docs"))
    hits = json_of(c.post("/search", json={"collection": "docs", "vector": [1, 1], "log": False}))
    seq = json_of(c.get("/readyz"))["applied_seq"]
    return info["count"], hits["hits"], seq


def test_rejections_are_problems_and_change_nothing(small_client: TestClient) -> None:
    before = _state(small_client)
    for method, path, kwargs, status in BAD_REQUESTS:
        r = getattr(small_client, method)(path, **kwargs)
        assert r.status_code == status, (path, kwargs, r.status_code, r.text[:300])
        assert r.headers["content-type"] == "application/problem+json", path
        problem = r.json()
        assert {"type", "title", "status", "detail"} <= set(problem) and problem["status"] == status
    assert _state(small_client) == before


def test_shards_and_replicas_above_one_need_a_cluster(small_client: TestClient) -> None:
    refused = small_client.post("/collections", json={"name": "x", "dim": 2, "shards": 4})
    assert refused.status_code == 409 and refused.json()["type"].endswith("no-cluster")
    assert small_client.get("/collections/x").status_code == 404
    one = {"name": "x", "dim": 2, "shards": 1, "replicas": 1}
    assert small_client.post("/collections", json=one).status_code == 201


def test_a_cosine_collection_refuses_vectors_without_a_direction(small_client: TestClient) -> None:
    """Cosine compares directions: a zero vector has none (it scored 0 against anything)."""
    c = small_client
    assert (
        c.post("/collections", json={"name": "cos", "dim": 2, "metric": "cosine"}).status_code
        == 201
    )
    point = {"id": "a", "vector": [0.6, 0.8]}
    assert c.post("/index", json={"collection": "cos", "points": [point]}).status_code == 200
    zero = {"id": "z", "vector": [0.0, 0.0]}
    for path, body in (
        ("/index", {"collection": "cos", "points": [zero]}),
        ("/search", {"collection": "cos", "vector": [0, 0]}),
        ("/search/batch", {"collection": "cos", "vectors": [[1, 0], [0, 0]]}),
    ):
        r = c.post(path, json=body)
        assert r.status_code == 422 and "zero vector" in r.json()["detail"], (path, r.text)
    assert json_of(c.get("/collections/cos"))["count"] == 1
    tiny = {"collection": "cos", "vector": [1e-25, 1e-25]}  # its squares underflow float32
    assert c.post("/search", json=tiny).status_code == 422
    assert c.post("/search", json={"collection": "cos", "vector": [1e-9, 0]}).status_code == 200
    # The other metrics take it: for ip and l2 a zero vector is a point like any other.
    assert c.post("/search", json={"collection": "docs", "vector": [0, 0]}).status_code == 200


def test_json_bodies_may_declare_a_charset_or_a_json_suffix(small_client: TestClient) -> None:
    body = b'{"collection":"docs","vector":[1,2],"log":false}'
    for media in ("application/json; charset=utf-8", "Application/JSON", "application/x+json"):
        r = small_client.post("/search", content=body, headers={"Content-Type": media})
        assert r.status_code == 200, (media, r.text)
    assert small_client.post("/search", content=body).status_code == 200  # none declared


def test_an_integral_number_is_an_integer_id(small_client: TestClient) -> None:
    """3.0 is the integer 3, as JSON Schema has it: the id "3"."""
    point = {"id": 3.0, "vector": [1, 1]}
    assert (
        small_client.post("/index", json={"collection": "docs", "points": [point]}).json()[
            "upserted"
        ]
        == 1
    )
    assert small_client.get("/collections/docs/points/3").status_code == 200
    r = small_client.post("/delete", json={"collection": "docs", "ids": [3.0]})
    assert r.status_code == 200 and r.json()["deleted"] == 1, r.text
