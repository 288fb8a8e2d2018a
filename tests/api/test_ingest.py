"""``POST /index`` answers the same whether a body is parsed in-process or in a worker.

Each request goes to one collection with the default threshold (these small bodies are
parsed in-process) and to a twin collection with ``index_inline_max_bytes=0`` (every body
spooled to a worker process); status, problem and the data stored must match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from app.api.routes import points as points_route
from app.main import create_app
from app.service.parsing import ParsedIndex, parse_in_worker
from app.settings import Settings
from tests.api.checked import json_of
from tests.api.conftest import wait_ready
from tests.api.test_validation import BAD_REQUESTS, GOOD

INDEX_REJECTIONS = [(kw, status) for _, path, kw, status in BAD_REQUESTS if path == "/index"]
MORE_REJECTIONS = [
    ({"json": {"collection": "docs"}}, 422),
    ({"json": {"collection": "docs", "points": "x"}}, 422),
    ({"json": {"collection": "docs", "points": [GOOD], "extra": 1}}, 422),
    ({"json": {"collection": 3, "points": [GOOD]}}, 422),
    ({"json": {"collection": "docs", "points": [{"id": "a", "vector": [1, 2], "x": 0}]}}, 422),
    ({"json": {"collection": "docs", "points": [{"id": "a", "vector": [[1, 2]]}]}}, 422),
    ({"json": {"collection": "docs", "points": [{"id": "a", "vector": [1, None]}]}}, 422),
    ({"json": {"collection": "docs", "points": [{"vector": [1, 2]}]}}, 422),
    ({"content": b'{"collection": "docs", "points": [{"id": "a", "vector": [1, 2]}'}, 400),
    ({"content": b'"docs"'}, 400),
]


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"max_batch_points": 10}))) as c:
        wait_ready(c)
        for name in ("docs", "docs2"):
            assert c.post("/collections", json={"name": name, "dim": 2}).status_code == 201
        yield c


def post_both(c: TestClient, make: Callable[[str], dict[str, Any]]) -> list[Response]:
    """The request for collection docs parsed inline, and for docs2 in the worker."""
    inline = c.app.state.settings
    answers = [c.post("/index", **make("docs"))]
    c.app.state.settings = inline.model_copy(update={"index_inline_max_bytes": 0})
    try:
        answers.append(c.post("/index", **make("docs2")))
    finally:
        c.app.state.settings = inline
    return answers


def _stored(c: TestClient, name: str) -> tuple:
    info = json_of(c.get(f"/collections/{name}"))
    query = {"collection": name, "vector": [1, 1], "k": 20, "log": False}
    hits = json_of(c.post("/search", json=query))["hits"]
    return info["count"], sorted((h["id"], h["score"], h["payload"]) for h in hits)


def _retarget(kwargs: dict[str, Any], name: str) -> dict[str, Any]:
    if "json" in kwargs and kwargs["json"].get("collection") == "docs":
        return {**kwargs, "json": {**kwargs["json"], "collection": name}}
    if "content" in kwargs:
        return {**kwargs, "content": kwargs["content"].replace(b'"docs"', f'"{name}"'.encode())}
    return kwargs


@pytest.mark.parametrize(("kwargs", "status"), INDEX_REJECTIONS + MORE_REJECTIONS)
def test_same_rejections(client: TestClient, kwargs: dict[str, Any], status: int) -> None:
    good = lambda name: {"json": {"collection": name, "points": [GOOD]}}  # noqa: E731
    assert [r.status_code for r in post_both(client, good)] == [200, 200]
    before = _stored(client, "docs")
    answers = post_both(client, lambda name: _retarget(kwargs, name))
    for r in answers:
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
    detail = [r.json() for r in answers]
    assert detail[0] == {**detail[1], "detail": detail[1]["detail"].replace("docs2", "docs")}
    assert _stored(client, "docs") == _stored(client, "docs2") == before


def test_same_results(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    pooled: list[str] = []

    async def spy(path: Path, dims: dict[str, int], max_points: int) -> ParsedIndex:
        pooled.append(path.name)
        return await parse_in_worker(path, dims, max_points)

    monkeypatch.setattr(points_route, "parse_in_worker", spy)
    batches = [
        [GOOD, {"id": 7, "vector": [0.5, -1], "payload": {"lang": "en", "n": [1, 2]}}],
        [{"id": "ok", "vector": [3, 4]}, {"id": "ok", "vector": [4, 3], "payload": {"v": 2}}],
        [{"id": f"p{i}", "vector": [i, 1e-3 * i]} for i in range(10)],
    ]
    for batch in batches:
        out = post_both(client, lambda name, b=batch: {"json": {"collection": name, "points": b}})
        assert [r.status_code for r in out] == [200, 200]
        assert out[0].json()["upserted"] == out[1].json()["upserted"]
    assert len(pooled) == len(batches)
    assert _stored(client, "docs") == _stored(client, "docs2")
    points = [json_of(client.get(f"/collections/{n}/points/ok")) for n in ("docs", "docs2")]
    assert points[0] == points[1] == {"id": "ok", "payload": {"v": 2}, "vector": [4.0, 3.0]}
