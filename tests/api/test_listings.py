"""Listings for browsing: pages of a collection's points, and the newest jobs first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.api.schemas import MAX_JOBS_PAGE, MAX_POINTS_PAGE
from app.main import create_app
from app.settings import Settings
from tests.api.checked import json_of
from tests.api.conftest import wait_ready

PROBLEM = "application/problem+json"


@pytest.fixture
def idle_client(settings: Settings) -> Iterator[TestClient]:
    """No worker at all: jobs stay queued, so a listing's statuses are known."""
    idle = settings.model_copy(update={"auto_policy": False, "embedded_worker": False})
    with TestClient(create_app(idle)) as c:
        wait_ready(c)
        yield c


def _index(client: TestClient, name: str, ids: list[str]) -> None:
    points = [
        {"id": pid, "vector": [float(i), 1.0], "payload": {"n": i}} for i, pid in enumerate(ids)
    ]
    r = client.post("/index", json={"collection": name, "points": points})
    assert r.status_code == 200, r.text


def _pages(client: TestClient, name: str, limit: int) -> list[list[dict]]:
    pages, after = [], None
    while True:
        params: dict = {"limit": limit} | ({"after": after} if after is not None else {})
        r = client.get(f"/collections/{name}/points", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body["points"])
        after = body["next"]
        if after is None:
            return pages


def test_points_are_paged_in_id_order_until_next_is_null(manual_client: TestClient) -> None:
    c = manual_client
    assert c.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
    ids = [f"p{i:03d}" for i in range(25)]
    _index(c, "docs", ids[::-1])  # inserted in reverse: the order is the ids', not insertion's
    c.post("/delete", json={"collection": "docs", "ids": ["p007"]})

    pages = _pages(c, "docs", limit=10)

    assert [len(p) for p in pages] == [10, 10, 4]
    seen = [p["id"] for page in pages for p in page]
    assert seen == [i for i in ids if i != "p007"]
    first = pages[0][0]
    assert first == {"id": "p000", "payload": {"n": 24}, "vector": [24.0, 1.0]}


def test_a_page_that_ends_exactly_at_the_last_point_says_there_is_no_next(
    manual_client: TestClient,
) -> None:
    c = manual_client
    assert c.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
    _index(c, "docs", ["a", "b"])
    body = json_of(c.get("/collections/docs/points", params={"limit": 2}))
    assert [p["id"] for p in body["points"]] == ["a", "b"] and body["next"] is None
    empty = json_of(c.get("/collections/docs/points", params={"after": "b"}))
    assert empty == {"points": [], "next": None}


def test_points_listing_refuses_bad_limits_and_unknown_collections(
    manual_client: TestClient,
) -> None:
    c = manual_client
    assert c.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
    for limit in (0, MAX_POINTS_PAGE + 1):
        r = c.get("/collections/docs/points", params={"limit": limit})
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
        assert r.json()["errors"][0]["loc"] == ["query", "limit"]
    r = c.get("/collections/docs/points", params={"after": "a\x00b"})  # PostgreSQL text has no NUL
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    r = c.get("/collections/nope/points")
    assert r.status_code == 404 and r.json()["type"].endswith("/collection-not-found")


def test_jobs_are_listed_newest_first_and_filtered(idle_client: TestClient) -> None:
    c = idle_client
    for name in ("docs", "other"):
        assert c.post("/collections", json={"name": name, "dim": 2}).status_code == 201
        _index(c, name, [f"p{i}" for i in range(40)])
    started = []
    for name, nlist in (("docs", 2), ("other", 2), ("docs", 3)):
        r = c.post(f"/collections/{name}/build", json={"nlist": nlist})
        started.append(json_of(r, 202)["job_id"])

    listed = json_of(c.get("/jobs"))["jobs"]
    assert [j["id"] for j in listed] == started[::-1]
    assert {j["kind"] for j in listed} == {"build"}

    docs = json_of(c.get("/jobs", params={"collection": "docs"}))["jobs"]
    assert [j["id"] for j in docs] == [started[2], started[0]]
    assert [j["id"] for j in json_of(c.get("/jobs", params={"limit": 1}))["jobs"]] == [started[2]]
    queued = json_of(c.get("/jobs", params={"status": "queued"}))["jobs"]
    assert {j["id"] for j in queued} == set(started)
    assert json_of(c.get("/jobs", params={"status": "succeeded"})) == {"jobs": []}


def test_jobs_listing_refuses_bad_filters(manual_client: TestClient) -> None:
    for params in ({"status": "done"}, {"limit": MAX_JOBS_PAGE + 1}, {"collection": "a b"}):
        r = manual_client.get("/jobs", params=params)
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, params
