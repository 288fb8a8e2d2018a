"""A search's parameters are validated once per parameter set, with the same outcome as
validating them every time."""

from __future__ import annotations

import pytest

from app.api.routes import search
from app.api.schemas import SearchParams
from app.service.errors import InvalidInput
from app.settings import Settings


@pytest.fixture(autouse=True)
def _forget() -> None:
    search._validated.clear()


def test_repeated_parameters_are_validated_once() -> None:
    settings = Settings()
    body = {"collection": "docs", "k": 5, "nprobe": 4, "routing": "centroid"}
    first = search._params(dict(body), settings)
    assert search._params(dict(body), settings) is first
    assert first[1].k == 5 and first[1].nprobe == 4 and first[1].routing == "centroid"


def test_kept_parameters_equal_a_fresh_validation() -> None:
    settings = Settings()
    bodies = [{"collection": "docs", "k": k} for k in (1, True, 1.0, 2)]
    bodies += [{"collection": "docs", "with_payload": flag} for flag in (1, True)]
    for body in bodies + bodies:  # the second pass reads what the first one kept
        params, opts = search._params(dict(body), settings)
        fresh = SearchParams.model_validate(body)
        assert params == fresh and opts == search._options(fresh, settings)
    # True, 1 and 1.0 are one key to a dict: the key tells them apart by type.
    assert len(search._validated) == len(bodies)


def test_kept_parameters_follow_the_settings() -> None:
    narrow = Settings(max_k=3)
    with pytest.raises(InvalidInput, match=r"k must be in \[1, 3\]"):
        search._params({"collection": "docs", "k": 5}, narrow)
    assert search._params({"collection": "docs", "k": 5}, Settings())[1].k == 5
    with pytest.raises(InvalidInput):  # refused again: errors are not kept
        search._params({"collection": "docs", "k": 5}, narrow)


def test_filters_are_validated_every_time() -> None:
    body = {"collection": "docs", "filter": {"must": [{"key": "lang", "match": {"value": "de"}}]}}
    search._params(dict(body), Settings())
    assert search._validated == {}


def test_at_most_kept_parameter_sets() -> None:
    settings = Settings()
    for k in range(1, search._KEPT + 10):
        search._params({"collection": "docs", "k": k}, settings)
    assert 0 < len(search._validated) <= search._KEPT
