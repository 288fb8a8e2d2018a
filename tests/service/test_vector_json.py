"""A search body read with its vectors as numbers is read as orjson reads it, or by orjson."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.service.errors import MalformedBody
from app.service.vector_json import load_with_vectors
from app.service.vectors import as_vector, as_vectors


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (7 and 7.0 are not the same here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) or (a != a and b != b)


def _as_orjson_reads(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with arrays read as numbers turned back into the lists orjson makes (as
    floats: compared with ``orjson``'s numbers as floats)."""
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in body.items()}


def _floats(value: Any) -> Any:
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return float(value)


def check_reads_as_orjson(raw: bytes, field: str, rows: bool) -> None:
    try:
        expected = orjson.loads(raw)
    except orjson.JSONDecodeError:
        with pytest.raises(MalformedBody):
            load_with_vectors(raw, field, rows)
        return
    if not isinstance(expected, dict):
        with pytest.raises(MalformedBody):
            load_with_vectors(raw, field, rows)
        return
    got = load_with_vectors(raw, field, rows)
    numbers = got.get(field)
    if isinstance(numbers, np.ndarray):
        assert numbers.dtype == np.float64
        assert numbers.ndim == (2 if rows else 1)
        assert numbers.tolist() == _floats(expected[field])
        got, expected = _as_orjson_reads(got), {**expected, field: _floats(expected[field])}
    assert _same(got, expected), (raw, got, expected)


def test_a_flat_vector_is_read_as_float64_numbers_and_the_rest_as_orjson_reads_it() -> None:
    raw = b'{"collection":"c","vector":[1,2.5,-3e2,0],"k":7.0,"filter":{"t":{"$gte":2}}}'
    body = load_with_vectors(raw, "vector", rows=False)
    assert isinstance(body["vector"], np.ndarray) and body["vector"].dtype == np.float64
    assert body.pop("vector").tolist() == [1.0, 2.5, -300.0, 0.0]
    expected = orjson.loads(raw)
    del expected["vector"]
    assert _same(body, expected)


def test_rows_of_one_length_are_read_as_a_matrix() -> None:
    body = load_with_vectors(b'{"vectors":[[1,2],[3,4],[5,6]],"k":3}', "vectors", rows=True)
    assert body["vectors"].shape == (3, 2) and body["k"] == 3


@pytest.mark.parametrize(
    ("raw", "field", "rows"),
    [
        (b'{"vector":[1,2],"vector":[3,4]}', "vector", False),  # orjson keeps the last
        (b'{"k":1,"k":2.0,"vector":[3,4]}', "vector", False),
        (b'{"vector":[[1],[2]]}', "vector", False),  # simdjson would flatten it
        (b'{"vector":[1,[2],3]}', "vector", False),
        (b'{"vector":[1,true]}', "vector", False),
        (b'{"vector":[1,"2"]}', "vector", False),
        (b'{"vector":[1,null]}', "vector", False),
        (b'{"vector":[1,2],"filter":{"t":{"$in":[1,2]}}}', "vector", False),
        (b'{"vector":[1,2],"note":"a [ in a string"}', "vector", False),
        (b'{"vector":{"0":1}}', "vector", False),
        (b'{"vector":[1,2],"k":123456789012345678901234}', "vector", False),
        (b'{"vector":[12345678901234567890123,1]}', "vector", False),
        (b'\xef\xbb\xbf{"vector":[1,2]}', "vector", False),  # a byte-order mark: orjson refuses
        (b' {"vector":[1,2]}', "vector", False),
        (b'{"vector":[1,2],}', "vector", False),
        (b'{"vector":[1,NaN]}', "vector", False),
        (b'{"vector":[1,1e400]}', "vector", False),
        (b"[1,2]", "vector", False),
        (b'{"vectors":[[1,2],[3]]}', "vectors", True),
        (b'{"vectors":[[1,[2]],3]}', "vectors", True),
        (b'{"vectors":[[1,2],3]}', "vectors", True),
        (b'{"vectors":[1,2]}', "vectors", True),
        (b'{"vectors":[]}', "vectors", True),
        (b'{"vectors":[[]]}', "vectors", True),
    ],
)
def test_where_a_reading_could_differ_the_body_is_read_as_orjson_reads_it(
    raw: bytes, field: str, rows: bool
) -> None:
    check_reads_as_orjson(raw, field, rows)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
numbers = st.integers(min_value=-(2**53), max_value=2**53) | st.floats(
    allow_nan=False, allow_infinity=False, width=32
)
vectors = st.lists(numbers, max_size=6) | st.lists(numbers | scalars, max_size=6)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(
    vector=vectors | st.lists(vectors, max_size=3) | scalars,
    others=st.dictionaries(st.sampled_from(["collection", "k", "filter", "nprobe", "x"]), values),
    vector_first=st.booleans(),
    repeat=st.sampled_from([None, "vector", "k"]),
)
def test_any_body_is_read_as_orjson_reads_it(
    vector: Any, others: dict[str, Any], vector_first: bool, repeat: str | None
) -> None:
    parts = [(k, v) for k, v in others.items() if k != "vector"]
    parts.insert(0 if vector_first else len(parts), ("vector", vector))
    if repeat is not None:
        parts.append((repeat, 1))
    raw = b"{" + b",".join(orjson.dumps(k) + b":" + orjson.dumps(v) for k, v in parts) + b"}"
    check_reads_as_orjson(raw, "vector", rows=False)
    batch = raw.replace(b'"vector"', b'"vectors"')
    check_reads_as_orjson(batch, "vectors", rows=True)


def test_numbers_read_from_json_are_checked_as_a_list_of_them_is() -> None:
    value = [0.5, -1, 2]
    read = np.asarray(value, dtype=np.float64)
    np.testing.assert_array_equal(as_vector(read, 3), as_vector(value, 3))
    np.testing.assert_array_equal(as_vectors(read[None], 3, "v"), as_vectors([value], 3, "v"))
    for bad, message in (([1.0, 2.0], "expected dimension 3, got 2"), ([1, 2, 1e300], "within")):
        with pytest.raises(Exception, match=message):
            as_vector(np.asarray(bad, dtype=np.float64), 3)
