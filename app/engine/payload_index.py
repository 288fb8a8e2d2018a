"""Payloads beside the vector index, and declared fields kept as typed columns.

A filter becomes a boolean mask over internal ids (the store's row ids), which the planner
(``filtered.py``) turns into a faiss selector. Conditions on a declared field compare one
numpy column (one C loop, ~50 us for 60,000 points); conditions on other keys fall back to
checking each candidate's payload in Python (~1 us a point), restricted to the points
that earlier ``must`` conditions left, so an indexed condition first narrows the scan.

Columns are indexed by internal id and grown geometrically: memory is the largest id times
one byte (live) plus, per declared field, one byte (present) and four (keyword, bool codes)
or eight (numbers) bytes. A list value of a declared field is kept aside (``multi``) and
checked in Python, so lists stay correct and scalars fast. Values of another type than the
declared one are not in the column; they match nothing, as in the payload scan.

``allowed`` answers a filter as a selector bitmap, cached (``allowed.AllowedCache``) under
a generation number that every write section bumps, so a cached bitmap always describes the
current payloads.

Concurrency: one writer at a time (the registry's apply lock), many searches. ``_rw`` guards
the columns and the payload dict: searches share it, writes hold it exclusively a chunk at a
time (columns are reallocated when they grow).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np

from app.engine.allowed import AllowedCache, AllowedIds
from app.engine.filters import (
    MISSING,
    Condition,
    Exists,
    Filter,
    FilterError,
    Match,
    Range,
    is_number,
    lookup,
)
from app.engine.locks import RWLock

# Points written per exclusive section: searches wait at most one chunk (~2 ms).
WRITE_CHUNK = 1000
MIN_CAPACITY = 1024
# Each declared field costs its columns and a pass on every write.
MAX_FIELDS = 32
# Bitmaps of recently used filters kept by an index that is given no shared cache.
DEFAULT_CACHE_BYTES = 16 << 20
_owners = itertools.count()  # cache owner numbers: never reused, unlike id()


class FieldKind(StrEnum):
    KEYWORD = "keyword"
    INTEGER = "integer"
    FLOAT = "float"
    BOOL = "bool"


class _Column:
    """One declared field: which ids hold a value, and the value if it has the field's type."""

    def __init__(self, key: str, kind: FieldKind, capacity: int) -> None:
        self.key = key
        self.kind = kind
        self.numeric = kind in (FieldKind.INTEGER, FieldKind.FLOAT)
        self.present = np.zeros(capacity, dtype=bool)
        self.values = _empty_values(self.numeric, capacity)
        self.codes: dict[Any, int] = {}  # keyword and bool values to their code
        self.multi: dict[int, list[Any]] = {}  # ids whose value is a list: the list

    def grow(self, capacity: int) -> None:
        self.present = _grown(self.present, capacity, False)
        self.values = _grown(self.values, capacity, np.nan if self.numeric else -1)

    def fits(self, x: Any) -> bool:
        return fits(self.kind, x)

    def set(self, pid: int, payload: Any) -> None:
        self.clear(pid)
        value = lookup(payload, self.key)
        if value is MISSING or value is None:
            return
        self.present[pid] = True
        if isinstance(value, list):
            self.multi[pid] = value
        elif self.fits(value):
            self.values[pid] = (
                value if self.numeric else self.codes.setdefault(value, len(self.codes))
            )

    def clear(self, pid: int) -> None:
        self.present[pid] = False
        self.values[pid] = np.nan if self.numeric else -1
        self.multi.pop(pid, None)

    def mask(self, cond: Condition) -> np.ndarray:
        """Ids satisfying ``cond`` (not restricted to live ids); FilterError on a type clash."""
        if isinstance(cond, Exists):
            return self.present.copy() if cond.present else ~self.present
        if isinstance(cond, Range):
            if not self.numeric:
                raise FilterError(f"{self.key!r} is indexed as {self.kind}: range needs numbers")
            out = _range_mask(self.values, cond)
        else:
            out = self._match_mask(cond)
        for pid, elements in self.multi.items():
            if cond.holds(elements):
                out[pid] = True
        return out

    def _match_mask(self, cond: Match) -> np.ndarray:
        wrong = [v for v in cond.values if not self._matchable(v)]
        if wrong:
            raise FilterError(f"{self.key!r} is indexed as {self.kind}: cannot match {wrong[0]!r}")
        if self.numeric:
            return np.isin(self.values, np.asarray(cond.values, dtype=np.float64))
        codes = [self.codes[v] for v in cond.values if v in self.codes]
        return np.isin(self.values, np.asarray(codes, dtype=np.int32))

    def _matchable(self, v: Any) -> bool:
        # Match values are str, int or bool: integers match number columns, even float ones.
        return isinstance(v, int) and not isinstance(v, bool) if self.numeric else self.fits(v)


class PayloadIndex:
    """Every live point's payload, and a typed column per declared field."""

    def __init__(
        self, fields: Mapping[str, str] | None = None, cache: AllowedCache | None = None
    ) -> None:
        self.fields = declared_fields(fields or {})
        self._rw = RWLock()
        self._generation = 0  # bumped by every write section: cached bitmaps go stale
        self._cache = cache if cache is not None else AllowedCache(DEFAULT_CACHE_BYTES)
        self._owner = next(_owners)
        self._capacity = MIN_CAPACITY
        self._live = np.zeros(self._capacity, dtype=bool)
        self._payloads: dict[int, Any] = {}
        self._columns = {k: _Column(k, kind, self._capacity) for k, kind in self.fields.items()}

    @classmethod
    def build(
        cls,
        fields: Mapping[str, str] | None,
        points: Iterable[tuple[int, Any]],
        cache: AllowedCache | None = None,
    ) -> PayloadIndex:
        """An index of ``points`` (internal id, payload), e.g. at start-up or on redeclaring."""
        index = cls(fields, cache)
        pairs = list(points)
        index.upsert([pid for pid, _ in pairs], [payload for _, payload in pairs])
        return index

    @property
    def count(self) -> int:
        return len(self._payloads)

    def upsert(self, ids: Sequence[int], payloads: Sequence[Any]) -> None:
        if len(ids) != len(payloads):
            raise ValueError("ids and payloads must have the same length")
        if not len(ids):
            return
        needed = max(ids) + 1
        if needed > self._capacity:
            with self._rw.write():
                self._grow(needed)
        for start in range(0, len(ids), WRITE_CHUNK):
            with self._rw.write():
                self._generation += 1
                for pid, payload in zip(
                    ids[start : start + WRITE_CHUNK],
                    payloads[start : start + WRITE_CHUNK],
                    strict=True,
                ):
                    self._live[pid] = True
                    self._payloads[pid] = payload
                    for column in self._columns.values():
                        column.set(pid, payload)

    def remove(self, ids: Sequence[int]) -> None:
        for start in range(0, len(ids), WRITE_CHUNK):
            with self._rw.write():
                self._generation += 1
                for pid in ids[start : start + WRITE_CHUNK]:
                    if self._payloads.pop(pid, MISSING) is MISSING:
                        continue
                    self._live[pid] = False
                    for column in self._columns.values():
                        column.clear(pid)

    def matching(self, f: Filter) -> np.ndarray:
        """Boolean mask over internal ids of the live points that pass ``f``.

        Raises FilterError when a condition does not fit a declared field's type.
        """
        with self._rw.read():
            out = self._filter(f, self._live)
            return out.copy() if out is self._live else out

    def allowed(self, f: Filter) -> AllowedIds:
        """The live points passing ``f`` as a selector bitmap, cached until the next write.

        Raises FilterError when a condition does not fit a declared field's type.
        """
        hit = self.cached(f)
        if hit is not None:
            return hit
        key = f.key
        with self._rw.read():
            generation = self._generation
            mask = self._filter(f, self._live)
            allowed = AllowedIds.from_mask(mask, (self._owner, key, generation))
        self._cache.put(self._owner, key, generation, allowed)
        return allowed

    def cached(self, f: Filter) -> AllowedIds | None:
        """``allowed(f)`` if its bitmap is cached for the current payloads, else None."""
        return self._cache.get(self._owner, f.key, self._generation)

    def _filter(self, f: Filter, within: np.ndarray) -> np.ndarray:
        """The ids of ``within`` passing ``f``; each item only looks at what is left."""
        out = within
        for item in f.must:
            out = self._item(item, out)
        if f.should:
            passed = np.zeros_like(out)
            for item in f.should:
                passed |= self._item(item, out)
            out = passed
        for item in f.must_not:
            out = out & ~self._item(item, out)
        return out

    def _item(self, item: Condition | Filter, within: np.ndarray) -> np.ndarray:
        if isinstance(item, Filter):
            return self._filter(item, within)
        column = self._columns.get(item.key)
        if column is not None:
            return column.mask(item) & within
        out = np.zeros_like(within)
        payloads = self._payloads
        passing = [
            pid
            for pid in np.flatnonzero(within).tolist()
            if item.holds(lookup(payloads[pid], item.key))
        ]
        out[passing] = True
        return out

    def _grow(self, needed: int) -> None:
        capacity = max(needed, 2 * self._capacity)
        self._live = _grown(self._live, capacity, False)
        for column in self._columns.values():
            column.grow(capacity)
        self._capacity = capacity


def fits(kind: FieldKind, x: Any) -> bool:
    """``x`` is a value of a field declared ``kind`` (an integer: a number with no fraction)."""
    if kind is FieldKind.INTEGER:
        return is_number(x) and (isinstance(x, int) or x.is_integer())
    if kind is FieldKind.FLOAT:
        return is_number(x)
    return isinstance(x, bool) if kind is FieldKind.BOOL else isinstance(x, str)


def misfit(fields: Mapping[str, FieldKind], payloads: Iterable[Any]) -> str | None:
    """Why a value in ``payloads`` does not fit its key's declared type (each element of a
    list too), or None. Such a value would be in no column: indexed, a filter could not
    find what it finds by scanning the payloads."""
    if not fields:
        return None
    for payload in payloads:
        for key, kind in fields.items():
            value = lookup(payload, key)
            if value is MISSING or value is None:
                continue
            for x in value if isinstance(value, list) else (value,):
                if x is not None and not fits(kind, x):
                    return f"payload key {key!r} is indexed as {kind}, and {x!r} is not one"
    return None


def declared_fields(fields: Mapping[str, str]) -> dict[str, FieldKind]:
    """Checked declarations: ValueError says which key or type is wrong."""
    if len(fields) > MAX_FIELDS:
        raise ValueError(f"at most {MAX_FIELDS} payload indexes per collection")
    out = {}
    for key, kind in fields.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 256:
            raise ValueError("payload index keys are strings of 1-256 characters")
        if kind not in list(FieldKind):
            raise ValueError(f"payload index {key!r}: type must be one of {list(FieldKind)}")
        out[key] = FieldKind(kind)
    return out


def _empty_values(numeric: bool, capacity: int) -> np.ndarray:
    if numeric:
        return np.full(capacity, np.nan, dtype=np.float64)
    return np.full(capacity, -1, dtype=np.int32)


def _grown(a: np.ndarray, capacity: int, fill: Any) -> np.ndarray:
    out = np.full(capacity, fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


def _range_mask(values: np.ndarray, r: Range) -> np.ndarray:
    """One comparison pass per bound: NaN (no number) fails each, so needs no pass of its own."""
    out: np.ndarray | None = None
    for compare, bound in (
        (np.greater, r.gt),
        (np.greater_equal, r.gte),
        (np.less, r.lt),
        (np.less_equal, r.lte),
    ):
        if bound is not None:
            passed = compare(values, bound)
            out = passed if out is None else np.logical_and(out, passed, out=out)
    return ~np.isnan(values) if out is None else out
