"""Every configurable request limit, just under and just over, on both search paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.api.checked import json_of
from tests.api.conftest import wait_ready

PROBLEM = "application/problem+json"
LIMITS = {
    "max_body_bytes": 4096,
    "max_k": 5,
    "max_batch_points": 3,
    "max_batch_queries": 2,
    "max_dim": 8,
    "max_collections": 2,
}


def _points(n: int) -> list[dict]:
    return [{"id": f"p{i}", "vector": [float(i), 1.0]} for i in range(n)]


# (method, path, body just within the limit, body just over it, status over the limit)
# fmt: off
EDGES = [
    ("post", "/index", {"collection": "docs", "points": _points(3)},
     {"collection": "docs", "points": _points(4)}, 422),
    ("post", "/delete", {"collection": "docs", "ids": ["x", "y", "z"]},
     {"collection": "docs", "ids": ["w", "x", "y", "z"]}, 422),
    ("post", "/search", {"collection": "docs", "vector": [1, 0], "k": 5},
     {"collection": "docs", "vector": [1, 0], "k": 6}, 422),
    ("post", "/search/batch", {"collection": "docs", "vectors": [[1, 0]] * 2, "k": 5},
     {"collection": "docs", "vectors": [[1, 0]] * 3}, 422),
    ("post", "/search/batch", {"collection": "docs", "vectors": [[1, 0]], "k": 5},
     {"collection": "docs", "vectors": [[1, 0]], "k": 6}, 422),
    ("post", "/collections", {"name": "wide", "dim": 8}, {"name": "wider", "dim": 9}, 422),
    ("post", "/search", {"collection": "docs", "vector": [1, 0], "k": 5, "log": False},
     {"collection": "docs", "vector": [1, 0], "log": False, "pad": "x" * 4096}, 413),
    ("post", "/index", {"collection": "docs", "points": _points(1)},
     {"collection": "docs", "points": _points(1), "pad": "x" * 4096}, 413),
]
# fmt: on


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        auto_policy=False,
        **LIMITS,
    )
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        assert c.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
        yield c


def _count(c: TestClient) -> tuple[int, int]:
    collections = json_of(c.get("/collections"))["collections"]
    return len(collections), json_of(c.get("/readyz"))["applied_seq"]


@pytest.mark.parametrize(("method", "path", "within", "over", "status"), EDGES)
def test_over_a_limit_is_a_problem_and_changes_nothing(
    limited: TestClient, method: str, path: str, within: dict, over: dict, status: int
) -> None:
    before = _count(limited)
    r = limited.request(method.upper(), path, json=over)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM and r.json()["status"] == status
    assert _count(limited) == before
    r = limited.request(method.upper(), path, json=within)
    assert r.status_code in (200, 201), r.text


def test_chunked_body_over_the_limit_is_413(limited: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"collection": "docs", "vector": [1, 0], "pad": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    r = limited.post("/search", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM


def test_collection_count_limit(limited: TestClient) -> None:
    assert limited.post("/collections", json={"name": "two", "dim": 2}).status_code == 201
    r = limited.post("/collections", json={"name": "three", "dim": 2})
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"].endswith("too-many-collections")
    assert [c["name"] for c in json_of(limited.get("/collections"))["collections"]] == [
        "docs",
        "two",
    ]
    assert limited.delete("/collections/two").status_code == 204
    assert limited.post("/collections", json={"name": "three", "dim": 2}).status_code == 201
