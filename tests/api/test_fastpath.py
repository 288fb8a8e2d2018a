"""The fast routes (app/api/fastpath.py) answer exactly as the FastAPI routes would, behind
the same request id, metrics, API key and body limit."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.fastpath import FORMS
from app.api.routes import search
from app.main import VecrouteApp, create_app
from app.settings import Settings

PROBLEM = "application/problem+json"


def _docs(client: TestClient) -> None:
    assert client.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
    points = [{"id": "a", "vector": [1, 0], "payload": {"x": 1}}, {"id": "b", "vector": [0, 1]}]
    assert client.post("/index", json={"collection": "docs", "points": points}).status_code == 200


def test_fast_path_serves_the_route_handlers() -> None:
    assert FORMS["/search"] is search.ONE
    assert FORMS["/search/batch"] is search.BATCH


def test_answers_errors_and_metrics(client: TestClient) -> None:
    _docs(client)
    r = client.post("/search", json={"collection": "docs", "vector": [1, 0.1], "k": 1})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {
        "hits": [{"id": "a", "score": 1.0, "payload": {"x": 1}}],
        "nprobe": None,
        "routing": "exact",
        "router_version": None,
        "plan": "exact",
        "scanned": 2.0,  # an exact search scores both points
        "candidates": 0.0,  # float lists: nothing re-ranked
    }
    cases = [
        ("/search", b"{not json", 400, "malformed-body"),
        ("/search", b"[1, 2]", 400, "malformed-body"),
        ("/search", b'{"collection": "docs", "vector": [1, 0], "k": 0}', 422, "invalid-request"),
        ("/search", b'{"collection": "docs", "vector": [1, 0], "kk": 1}', 422, "invalid-request"),
        ("/search", b'{"collection": "docs", "vector": [1]}', 422, "invalid-request"),
        ("/search", b'{"collection": "nope", "vector": [1, 0]}', 404, "collection-not-found"),
        ("/search/batch", b'{"collection": "docs", "vectors": []}', 422, "invalid-request"),
    ]
    for path, body, status, slug in cases:
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["type"].endswith(slug), r.json()
    assert client.get("/search").status_code == 405
    metrics = client.get("/metrics").text
    assert 'route="/search",status="200"' in metrics
    assert 'route="/search/batch",status="422"' in metrics


def test_behind_the_api_key_and_body_limit(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_key": "s3cret"})
    with TestClient(create_app(keyed)) as client:
        auth = {"Authorization": "Bearer s3cret"}
        body = {"collection": "docs", "vector": [1, 0]}
        assert client.post("/search", json=body).status_code == 401
        big = b'{"collection": "docs", "vector": [' + b"0," * 200_000 + b"0]}"
        r = client.post("/search", content=big, headers=auth)
        assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
        r = client.get("/healthz")  # open without a key, like the FastAPI route
        assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_healthz_and_search_carry_request_ids_and_metrics(client: TestClient) -> None:
    _docs(client)
    r = client.get("/healthz", headers={"X-Request-ID": "probe-1"})
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"] == "probe-1"
    r = client.post("/search", json={"collection": "docs", "vector": [1, 0]})
    assert r.status_code == 200 and len(r.headers["x-request-id"]) == 16
    assert client.post("/healthz").status_code == 405  # only GET is the fast route
    metrics = client.get("/metrics").text
    assert (
        'vecroute_http_request_seconds_count{method="GET",route="/healthz",status="200"} 1.0'
        in (metrics)
    )
    assert 'method="POST",route="/search",status="200"} 1.0' in metrics


def _engine_ms(server_timing: str) -> float:
    name, duration = server_timing.split(";")
    assert name == "engine" and duration.startswith("dur=")
    return float(duration.removeprefix("dur="))


def test_searches_report_the_engine_time_in_server_timing(client: TestClient) -> None:
    """The engine's share of a search, so a caller can tell it from the request path's."""
    _docs(client)
    fast = client.post("/search", json={"collection": "docs", "vector": [1, 0]})
    batch = client.post("/search/batch", json={"collection": "docs", "vectors": [[1, 0]] * 3})
    for r in (fast, batch):
        assert r.status_code == 200
        assert 0 <= _engine_ms(r.headers["server-timing"]) < 60_000
        assert "engine" not in r.text  # a header, not a field of the documented body
    routed = search.SearchReply({"hits": []}, 0.0004567, lambda: None)  # as FastAPI's routes
    assert routed.headers() == {"server-timing": "engine;dur=0.457"}
    by_shards = search.SearchReply({"hits": []}, None, lambda: None)
    assert by_shards.headers() is None
    assert "server-timing" not in client.get("/healthz").headers


def test_the_fastapi_routes_record_their_searches_once_answered(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reached without the edge, the routes log and count a search as the fast path does."""
    _docs(client)
    app = client.app
    assert isinstance(app, VecrouteApp)
    logged: list[tuple[str, int, int]] = []

    def log_queries(name: str, queries: np.ndarray, k: int) -> None:
        logged.append((name, len(queries), k))

    monkeypatch.setattr(app.state.service, "log_queries", log_queries)
    registry = app.state.metrics.registry
    exact = {"routing": "exact", "nprobe": "none"}

    def counted() -> float:
        return registry.get_sample_value("vecroute_search_queries_total", exact) or 0.0

    before = counted()
    routed = TestClient(app.routed)
    assert routed.post("/search", json={"collection": "docs", "vector": [1, 0]}).is_success
    batch = {"collection": "docs", "vectors": [[1, 0]] * 3, "k": 2}
    assert routed.post("/search/batch", json=batch).is_success
    quiet = {"collection": "docs", "vector": [1, 0], "log": False}
    assert routed.post("/search", json=quiet).is_success
    assert logged == [("docs", 1, 10), ("docs", 3, 2)]  # "log": false is not logged
    assert counted() == before + 5
