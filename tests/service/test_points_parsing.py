"""``parse_index_body`` in-process and in the worker process: identical results and errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from app.service.errors import InvalidInput, MalformedBody
from app.service.parsing import ParsedIndex, parse_in_worker, parse_index_body, spool_file

DIMS = {"docs": 3}
MAX_POINTS = 4


def _both(raw: bytes, dims: dict[str, int] = DIMS) -> tuple[Any, Any]:
    """(in-process, worker) outcome for one body: a ParsedIndex or the exception raised."""
    out: list[Any] = []
    f, path = spool_file()
    try:
        f.write(raw)
        f.close()
        for parse in (
            lambda: parse_index_body(raw, dims, MAX_POINTS),
            lambda: asyncio.run(parse_in_worker(path, dims, MAX_POINTS)),
        ):
            try:
                out.append(parse())
            except (InvalidInput, MalformedBody) as exc:
                out.append(exc)
    finally:
        path.unlink(missing_ok=True)
    assert not path.exists()
    return out[0], out[1]


def _same(a: Any, b: Any) -> None:
    if isinstance(a, Exception):
        assert type(a) is type(b) and str(a) == str(b)
        return
    assert isinstance(a, ParsedIndex) and isinstance(b, ParsedIndex)
    assert (a.params, a.dim, a.ids, a.payloads) == (b.params, b.dim, b.ids, b.payloads)
    assert a.vectors.dtype == b.vectors.dtype == np.float32
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert type(a.error) is type(b.error) and str(a.error) == str(b.error)


def body(points: Any, **extra: Any) -> bytes:
    return orjson.dumps({"collection": "docs", "points": points, **extra})


P = {"id": "a", "vector": [0.1, 0.2, 0.3]}
CASES = {
    "valid": body([P, {"id": 5, "vector": [1, 2, 3], "payload": {"k": [1, "x"]}}]),
    "last id wins": body([P, {"id": "b", "vector": [0, 0, 1]}, {**P, "vector": [3, 2, 1]}]),
    "float32 rounding": body([{"id": "r", "vector": [0.1, 1e-40, 3.4e38]}]),
    "nan": b'{"collection": "docs", "points": [{"id": "n", "vector": [NaN, 1, 2]}]}',
    "not json": b'{"collection": "docs", "points": [',
    "not an object": b"[1, 2, 3]",
    "wrong dimension": body([P, {"id": "b", "vector": [1, 2]}]),
    "ragged": body([P, {"id": "b", "vector": [1, [2], 3]}]),
    "string component": body([{"id": "s", "vector": ["1", 2, 3]}]),
    "overflow": body([{"id": "o", "vector": [1e39, 2, 3]}]),
    "empty id": body([{"id": "", "vector": [1, 2, 3]}]),
    "bool id": body([{"id": True, "vector": [1, 2, 3]}]),
    "long id": body([{"id": "x" * 257, "vector": [1, 2, 3]}]),
    "payload not object": body([{**P, "payload": [1]}]),
    "unknown field": body([{**P, "extra": 1}]),
    "too many": body([{"id": str(i), "vector": [1, 2, 3]} for i in range(MAX_POINTS + 1)]),
    "no points": orjson.dumps({"collection": "docs"}),
    "empty points": body([]),
    "unknown collection": orjson.dumps({"collection": "nope", "points": [P]}),
    "collection not a string": orjson.dumps({"collection": 3, "points": [P]}),
    "extra field kept for the caller": body([P], k=1),
}


@pytest.mark.parametrize("name", list(CASES))
def test_worker_matches_in_process(name: str) -> None:
    inline, pooled = _both(CASES[name])
    _same(inline, pooled)


def test_outcomes() -> None:
    valid = parse_index_body(CASES["last id wins"], DIMS, MAX_POINTS)
    assert valid.points()[0] == ["b", "a"] and valid.vectors.tolist() == [[0, 0, 1], [3, 2, 1]]
    with pytest.raises(MalformedBody):
        parse_index_body(CASES["nan"], DIMS, MAX_POINTS)
    wrong = parse_index_body(CASES["wrong dimension"], DIMS, MAX_POINTS)
    with pytest.raises(InvalidInput, match="every vector must have 3 components"):
        wrong.points()
    unknown = parse_index_body(CASES["unknown collection"], DIMS, MAX_POINTS)
    assert unknown.dim is None and unknown.params == {"collection": "nope"}


def test_spool_file_is_removed_by_its_owner() -> None:
    f, path = spool_file()
    f.close()
    assert isinstance(path, Path) and path.exists()
    path.unlink()
