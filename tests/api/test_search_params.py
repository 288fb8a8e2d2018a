"""A search's parameters are validated once per parameter set, with the same outcome as
validating them every time, by the one cache an app injects into both search paths."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.api.schemas import SearchParams
from app.api.search_params import SearchParamCache, search_options
from app.main import VecrouteApp
from app.service.errors import InvalidInput
from app.settings import Settings


def test_repeated_parameters_are_validated_once() -> None:
    cache = SearchParamCache(Settings())
    body = {"collection": "docs", "k": 5, "nprobe": 4, "routing": "centroid"}
    first = cache.resolve(dict(body))
    assert cache.resolve(dict(body)) is first
    assert first[1].k == 5 and first[1].nprobe == 4 and first[1].routing == "centroid"


def test_kept_parameters_equal_a_fresh_validation() -> None:
    settings = Settings()
    cache = SearchParamCache(settings)
    bodies = [{"collection": "docs", "k": k} for k in (1, 2, 2.0)]  # 2.0: a JSON integer
    bodies += [{"collection": "docs", "with_payload": flag} for flag in (True, False)]
    for body in bodies + bodies:  # the second pass reads what the first one kept
        params, opts = cache.resolve(dict(body))
        fresh = SearchParams.model_validate(body)
        assert params == fresh and opts == search_options(fresh, settings)
    assert len(cache) == len(bodies)


def test_a_kept_value_does_not_let_another_type_through() -> None:
    """True and 1 are one key to a dict, but only 1 is a k and only true a flag."""
    cache = SearchParamCache(Settings())
    assert cache.resolve({"collection": "docs", "k": 1})[1].k == 1
    assert cache.resolve({"collection": "docs", "with_payload": True})[1].with_payload
    for body in (
        {"collection": "docs", "k": True},
        {"collection": "docs", "k": 1.5},
        {"collection": "docs", "k": "1"},
        {"collection": "docs", "with_payload": 1},
        {"collection": "docs", "with_payload": "yes"},
    ):
        with pytest.raises(ValidationError):
            cache.resolve(body)
    assert len(cache) == 2


def test_kept_parameters_follow_the_settings() -> None:
    narrow = SearchParamCache(Settings(max_k=3))
    with pytest.raises(InvalidInput, match=r"k must be in \[1, 3\]"):
        narrow.resolve({"collection": "docs", "k": 5})
    assert SearchParamCache(Settings()).resolve({"collection": "docs", "k": 5})[1].k == 5
    with pytest.raises(InvalidInput):  # refused again: errors are not kept
        narrow.resolve({"collection": "docs", "k": 5})
    assert len(narrow) == 0


def test_filters_are_validated_every_time() -> None:
    cache = SearchParamCache(Settings())
    body = {"collection": "docs", "filter": {"must": [{"key": "lang", "match": {"value": "de"}}]}}
    assert cache.resolve(dict(body))[1].filter is not None
    assert len(cache) == 0


def test_at_most_kept_parameter_sets() -> None:
    cache = SearchParamCache(Settings(), kept=8)
    for k in range(1, 20):
        cache.resolve({"collection": "docs", "k": k})
    assert 0 < len(cache) <= 8


def test_both_search_paths_use_the_apps_cache(client: TestClient) -> None:
    """The fast path and the FastAPI routes (reached here without the service's own
    layers) share the cache the app was made with."""
    app = client.app
    assert isinstance(app, VecrouteApp)
    assert client.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
    cache = app.state.search_params
    assert isinstance(cache, SearchParamCache) and len(cache) == 0
    assert client.post("/search", json={"collection": "docs", "vector": [1, 0]}).status_code == 200
    assert len(cache) == 1
    routed = TestClient(app.routed)
    batch = {"collection": "docs", "vectors": [[1, 0]]}
    assert routed.post("/search/batch", json=batch).status_code == 200
    assert len(cache) == 1  # the same parameters: kept once for both
    assert routed.post("/search", json={"collection": "docs", "vector": [1, 0], "k": 3}).json()
    assert len(cache) == 2
