"""The filter language: parsing errors say where, and typed columns agree with the payload scan."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.engine.filters import Filter, FilterError, parse_filter
from app.engine.payload_index import PayloadIndex, declared_fields, misfit

DECLARED = {"color": "keyword", "year": "integer", "price": "float", "flag": "bool"}
COLORS = ["red", "green", "blue", "black"]


def random_payload(rng: np.random.Generator) -> dict[str, Any] | None:
    """Varied payloads: missing keys, nulls, lists, wrong types, nested objects."""
    if rng.random() < 0.05:
        return None
    p: dict[str, Any] = {}
    roll = rng.random()
    if roll < 0.6:
        p["color"] = str(rng.choice(COLORS))
    elif roll < 0.75:
        p["color"] = [str(c) for c in rng.choice(COLORS, size=rng.integers(0, 3))]
    elif roll < 0.8:
        p["color"] = 7  # the wrong type for a keyword field
    elif roll < 0.85:
        p["color"] = None
    if rng.random() < 0.8:
        p["year"] = int(rng.integers(2000, 2025))
    elif rng.random() < 0.5:
        p["year"] = float(rng.integers(2000, 2025))  # 2010.0 matches 2010
    if rng.random() < 0.7:
        p["price"] = float(np.round(rng.uniform(0, 100), 2))
    if rng.random() < 0.7:
        p["flag"] = bool(rng.random() < 0.5)
    elif rng.random() < 0.3:
        p["flag"] = 1  # not a boolean
    if rng.random() < 0.5:
        p["meta"] = {"lang": str(rng.choice(["en", "de", "fr"])), "n": int(rng.integers(0, 5))}
    return p


def random_condition(rng: np.random.Generator) -> dict[str, Any]:
    kind = rng.integers(0, 8)
    if kind == 0:
        return {"key": "color", "match": {"value": str(rng.choice(COLORS))}}
    if kind == 1:
        return {"key": "color", "match": {"any": [str(c) for c in rng.choice(COLORS, 2)]}}
    if kind == 2:
        lo = int(rng.integers(2000, 2025))
        return {"key": "year", "range": {"gte": lo, "lt": lo + int(rng.integers(1, 10))}}
    if kind == 3:
        return {"key": "year", "match": {"value": int(rng.integers(2000, 2025))}}
    if kind == 4:
        return {"key": "price", "range": {"gt": float(rng.uniform(0, 100))}}
    if kind == 5:
        return {"key": "flag", "match": {"value": bool(rng.random() < 0.5)}}
    if kind == 6:
        key = str(rng.choice(["color", "year", "flag", "meta.lang", "nope"]))
        return {"key": key, "exists": bool(rng.random() < 0.5)}
    return {"key": "meta.lang", "match": {"value": str(rng.choice(["en", "de"]))}}


def random_filter(rng: np.random.Generator, depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for clause in ("must", "should", "must_not"):
        n = int(rng.integers(0, 3))
        items = [
            random_filter(rng, depth + 1)
            if depth < 2 and rng.random() < 0.2
            else random_condition(rng)
            for _ in range(n)
        ]
        if items:
            out[clause] = items
    return out


def brute_force_mask(f: Filter, payloads: dict[int, Any], size: int) -> np.ndarray:
    out = np.zeros(size, dtype=bool)
    out[[pid for pid, p in payloads.items() if f.holds(p)]] = True
    return out


def random_write(
    rng: np.random.Generator, index: PayloadIndex, state: dict[int, Any], size: int
) -> None:
    """Remove (30%) or upsert ``size`` random ids below 3000, in the index and in ``state``."""
    ids = [int(i) for i in rng.choice(3000, size=size, replace=False)]
    if rng.random() < 0.3:
        index.remove(ids)
        for pid in ids:
            state.pop(pid, None)
    else:
        payloads = [random_payload(rng) for _ in ids]
        index.upsert(ids, payloads)
        state.update(zip(ids, payloads, strict=True))


def test_columns_and_payload_scan_agree_with_the_definition() -> None:
    rng = np.random.default_rng(7)
    ids = rng.choice(5000, size=1500, replace=False)
    payloads = {int(pid): random_payload(rng) for pid in ids}
    indexed = PayloadIndex.build(DECLARED, payloads.items())
    scanned = PayloadIndex.build({}, payloads.items())
    for _ in range(150):
        f = parse_filter(random_filter(rng))
        expected = brute_force_mask(f, payloads, 5000)
        for index in (indexed, scanned):
            got = index.matching(f)
            assert np.array_equal(got[:5000], expected) and not got[5000:].any()


def test_writes_keep_the_columns_in_step() -> None:
    """Replace, delete and re-add points: the index answers as if built from the final state."""
    rng = np.random.default_rng(8)
    index = PayloadIndex(DECLARED)
    state: dict[int, Any] = {}
    for _ in range(30):
        random_write(rng, index, state, 200)
    assert index.count == len(state)
    for _ in range(40):
        f = parse_filter(random_filter(rng))
        assert np.array_equal(index.matching(f)[:3000], brute_force_mask(f, state, 3000))


def test_cached_bitmaps_always_describe_the_current_payloads() -> None:
    """A few filters asked again and again between writes: never a stale answer."""
    rng = np.random.default_rng(9)
    index = PayloadIndex(DECLARED)
    state: dict[int, Any] = {}
    filters = [parse_filter(random_filter(rng)) for _ in range(5)]
    for _ in range(40):
        random_write(rng, index, state, int(rng.integers(1, 50)))
        for f in filters:
            expected = brute_force_mask(f, state, 3000)
            for _ in range(2):  # the second answer comes from the cache
                allowed = index.allowed(f)
                assert allowed.count == expected.sum()
                got = np.unpackbits(allowed.bits, bitorder="little").astype(bool)[:3000]
                assert np.array_equal(got, expected[: len(got)])
                assert not expected[len(got) :].any()
    assert index.allowed(filters[0]) is index.allowed(filters[0])


def test_match_one_and_match_true_are_cached_apart() -> None:
    index = PayloadIndex({})
    index.upsert([0, 1], [{"v": 1}, {"v": True}])
    one = index.allowed(parse_filter({"must": [{"key": "v", "match": {"value": 1}}]}))
    true = index.allowed(parse_filter({"must": [{"key": "v", "match": {"value": True}}]}))
    assert (one.count, true.count) == (1, 1) and one.bits[0] == 0b01 and true.bits[0] == 0b10


def test_semantics_by_example() -> None:
    payloads = {
        1: {"lang": "en", "year": 2020, "tags": ["a", "b"], "ok": True},
        2: {"lang": "de", "year": 2021.0, "tags": [], "ok": 1},
        3: {"lang": None, "meta": {"lang": "en"}},
        4: None,
    }

    def ids(raw: dict[str, Any]) -> list[int]:
        mask = PayloadIndex.build({"year": "integer"}, payloads.items()).matching(parse_filter(raw))
        return np.flatnonzero(mask).tolist()

    assert ids({}) == [1, 2, 3, 4]
    assert ids({"must": [{"key": "tags", "match": {"value": "b"}}]}) == [1]
    assert ids({"must": [{"key": "year", "match": {"value": 2021}}]}) == [2]
    assert ids({"must": [{"key": "ok", "match": {"value": True}}]}) == [1]
    assert ids({"must": [{"key": "ok", "match": {"value": 1}}]}) == [2]
    assert ids({"must": [{"key": "lang", "exists": True}]}) == [1, 2]
    assert ids({"must": [{"key": "lang", "exists": False}]}) == [3, 4]
    assert ids({"must": [{"key": "meta.lang", "match": {"any": ["en", "fr"]}}]}) == [3]
    assert ids(
        {"should": [{"key": "year", "range": {"gt": 2020}}, {"key": "meta.lang", "exists": True}]}
    ) == [2, 3]
    assert ids({"must_not": [{"must": [{"key": "lang", "match": {"value": "en"}}]}]}) == [2, 3, 4]


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ([], "must be an object"),
        ({"mustt": []}, "unknown clauses ['mustt']"),
        ({"must": {}}, "filter.must must be a list"),
        ({"must": [{"key": "a", "regex": "x"}]}, "filter.must[0] has unknown operators ['regex']"),
        ({"must": [{"key": "a"}]}, "exactly one of"),
        ({"must": [{"key": "a", "match": {"value": 1}, "exists": True}]}, "exactly one of"),
        ({"must": [{"key": "a", "match": {"value": 1.5}}]}, "not a decimal number"),
        ({"must": [{"key": "a", "match": {"value": None}}]}, "not null"),
        ({"must": [{"key": "a", "match": {"any": []}}]}, "list of 1-1024 values"),
        ({"must": [{"key": "a", "match": {"any": ["x", 1]}}]}, "mixes value types"),
        ({"must": [{"key": "a", "match": {"like": "x"}}]}, '{"value": v}'),
        ({"must": [{"key": "a", "range": {}}]}, "some of"),
        ({"must": [{"key": "a", "range": {"gt": "3"}}]}, "filter.must[0].range.gt"),
        ({"must": [{"key": "a", "range": {"gt": True}}]}, "not a boolean"),
        ({"must": [{"key": "a", "range": {"from": 1}}]}, "unknown bounds ['from']"),
        ({"should": [{"key": "a", "exists": "yes"}]}, "filter.should[0].exists"),
        ({"must": [{"key": "", "exists": True}]}, "1-256 characters"),
    ],
)
def test_malformed_filters_say_what_and_where(raw: Any, where: str) -> None:
    with pytest.raises(FilterError) as err:
        parse_filter(raw)
    assert where in str(err.value)


def test_nesting_and_size_are_bounded() -> None:
    deep: dict[str, Any] = {"must": [{"key": "a", "exists": True}]}
    for _ in range(10):
        deep = {"must": [deep]}
    with pytest.raises(FilterError, match="nests deeper"):
        parse_filter(deep)
    wide = {"should": [{"key": "a", "exists": True}] * 300}
    with pytest.raises(FilterError, match="at most 256 conditions"):
        parse_filter(wide)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"key": "color", "match": {"value": 3}}, "indexed as keyword"),
        ({"key": "color", "range": {"gt": 3}}, "range needs numbers"),
        ({"key": "year", "match": {"value": "2020"}}, "indexed as integer"),
        ({"key": "flag", "match": {"value": 1}}, "indexed as bool"),
        ({"key": "price", "match": {"value": True}}, "indexed as float"),
    ],
)
def test_conditions_must_fit_the_declared_type(raw: dict[str, Any], message: str) -> None:
    index = PayloadIndex.build(DECLARED, [(1, {"color": "red"})])
    with pytest.raises(FilterError, match=message):
        index.matching(parse_filter({"must": [raw]}))


def test_a_misfit_is_a_declared_key_holding_a_value_its_type_cannot() -> None:
    declared = declared_fields({"color": "keyword", "year": "integer", "flag": "bool"})
    fitting = [{"color": "red", "year": 2020.0, "flag": False}, {"color": ["a", None]}, {}]
    assert misfit(declared, fitting) is None
    assert misfit({}, [{"color": 3}]) is None  # nothing declared: anything goes
    for payload, why in (
        ({"color": 3}, "'color' is indexed as keyword, and 3"),
        ({"year": "2020"}, "'year' is indexed as integer, and '2020'"),
        ({"year": True}, "'year' is indexed as integer, and True"),
        ({"year": 2020.5}, "'year' is indexed as integer, and 2020.5"),
        ({"flag": 1}, "'flag' is indexed as bool, and 1"),
        ({"color": ["a", 1]}, "'color' is indexed as keyword, and 1"),
    ):
        reason = misfit(declared, [*fitting, payload])
        assert reason is not None and why in reason
