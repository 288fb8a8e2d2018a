"""The filter language over JSON payloads: parsed and checked once, then evaluated.

A filter is a tree ``{"must": [...], "should": [...], "must_not": [...]}`` whose items are
conditions on one payload key or nested filters. Semantics, shared by every evaluator (the
payload scan here and the typed columns of ``payload_index.py``):

- ``must``: every item holds; ``should``: at least one holds (absent or empty: no
  constraint); ``must_not``: no item holds. ``{}`` matches every point.
- ``{"key": k, "match": {"value": v}}``: the value at ``k`` equals ``v``; ``{"any": [...]}``:
  it equals one of them. Match values are strings, integers or booleans; numbers compare
  by value (3 matches 3.0) and a boolean is never a number (true does not match 1).
- ``{"key": k, "range": {"gte": a, "lt": b}}``: a number (not a boolean) within every bound.
- ``{"key": k, "exists": true}``: the key is present and not null (``false``: the opposite).
- A list value satisfies ``match`` or ``range`` when one of its elements does (tags).
- ``key`` is a dotted path into nested objects: ``"meta.lang"``.

Malformed filters raise ``FilterError`` with the path of the offending part, so the API can
answer 422 saying where.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

# Bounds that keep one filter's evaluation cost proportional to the collection, not to
# the request: nesting depth, conditions in total, values of one any-of.
MAX_DEPTH = 8
MAX_CONDITIONS = 256
MAX_ANY = 1024
CLAUSES = ("must", "should", "must_not")
OPERATORS = ("match", "range", "exists")
BOUNDS = ("gt", "gte", "lt", "lte")

Scalar = str | int | bool


class FilterError(ValueError):
    """A filter that is malformed, or that does not fit the declared type of a field."""


class _Missing:
    """The value of an absent key (distinct from JSON null)."""


MISSING = _Missing()


@dataclass(frozen=True)
class Match:
    key: str
    values: tuple[Scalar, ...]  # any-of; a single ``value`` is a one-element tuple
    atoms: frozenset[tuple[str, Any]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "atoms", frozenset(atom(v) for v in self.values))

    def holds(self, value: Any) -> bool:
        if isinstance(value, list):
            return any(atom(e) in self.atoms for e in value)
        return atom(value) in self.atoms


@dataclass(frozen=True)
class Range:
    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def holds(self, value: Any) -> bool:
        if isinstance(value, list):
            return any(self._number_within(e) for e in value)
        return self._number_within(value)

    def _number_within(self, x: Any) -> bool:
        if not is_number(x):
            return False
        return not (
            (self.gt is not None and not x > self.gt)
            or (self.gte is not None and not x >= self.gte)
            or (self.lt is not None and not x < self.lt)
            or (self.lte is not None and not x <= self.lte)
        )


@dataclass(frozen=True)
class Exists:
    key: str
    present: bool

    def holds(self, value: Any) -> bool:
        return (value is not MISSING and value is not None) == self.present


Condition = Match | Range | Exists


@dataclass(frozen=True)
class Filter:
    must: tuple[Condition | Filter, ...] = ()
    should: tuple[Condition | Filter, ...] = ()
    must_not: tuple[Condition | Filter, ...] = ()

    @cached_property
    def key(self) -> str:
        """A cache key, computed once: equal keys, same filter (``repr`` tells match 1 from
        match true, which compare equal)."""
        return repr(self)

    def holds(self, payload: Any) -> bool:
        """Whether one payload (a dict, or None for a point without one) passes."""
        return (
            all(_item_holds(i, payload) for i in self.must)
            and (not self.should or any(_item_holds(i, payload) for i in self.should))
            and not any(_item_holds(i, payload) for i in self.must_not)
        )


def _item_holds(item: Condition | Filter, payload: Any) -> bool:
    if isinstance(item, Filter):
        return item.holds(payload)
    return item.holds(lookup(payload, item.key))


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def atom(x: Any) -> tuple[str, Any]:
    """A hashable key under which equal match values meet: booleans apart from numbers."""
    if isinstance(x, bool):
        return ("b", x)
    if isinstance(x, int | float):
        return ("n", x)  # 3 == 3.0 and hash(3) == hash(3.0)
    if isinstance(x, str):
        return ("s", x)
    return ("?", id(x))  # objects, lists and null match nothing


def lookup(payload: Any, key: str) -> Any:
    """The value at a dotted ``key`` in a payload, or ``MISSING``."""
    value = payload
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


# -- parsing ------------------------------------------------------------------------------


def parse_filter(raw: Any) -> Filter:
    """The filter a JSON document describes; ``FilterError`` says what and where if not."""
    budget = [MAX_CONDITIONS]
    return _filter(raw, "filter", 0, budget)


def _filter(raw: Any, at: str, depth: int, budget: list[int]) -> Filter:
    if not isinstance(raw, Mapping):
        raise FilterError(f"{at} must be an object with must, should or must_not")
    unknown = set(raw) - set(CLAUSES)
    if unknown:
        raise FilterError(f"{at} has unknown clauses {sorted(unknown)}; use {list(CLAUSES)}")
    if depth > MAX_DEPTH:
        raise FilterError(f"{at} nests deeper than {MAX_DEPTH} levels")
    clauses: dict[str, tuple[Condition | Filter, ...]] = {}
    for clause in CLAUSES:
        items = raw.get(clause, [])
        if not isinstance(items, list):
            raise FilterError(f"{at}.{clause} must be a list")
        clauses[clause] = tuple(
            _item(item, f"{at}.{clause}[{i}]", depth, budget) for i, item in enumerate(items)
        )
    return Filter(**clauses)


def _item(raw: Any, at: str, depth: int, budget: list[int]) -> Condition | Filter:
    if isinstance(raw, Mapping) and "key" not in raw:
        return _filter(raw, at, depth + 1, budget)
    budget[0] -= 1
    if budget[0] < 0:
        raise FilterError(f"a filter holds at most {MAX_CONDITIONS} conditions")
    return _condition(raw, at)


def _condition(raw: Any, at: str) -> Condition:
    if not isinstance(raw, Mapping):
        raise FilterError(f"{at} must be a condition object or a nested filter")
    key = raw["key"]
    if not isinstance(key, str) or not 1 <= len(key) <= 256:
        raise FilterError(f"{at}.key must be a string of 1-256 characters")
    ops = [op for op in raw if op != "key"]
    unknown = [op for op in ops if op not in OPERATORS]
    if unknown:
        raise FilterError(f"{at} has unknown operators {unknown}; use one of {list(OPERATORS)}")
    if len(ops) != 1:
        raise FilterError(f"{at} needs exactly one of {list(OPERATORS)}")
    op = ops[0]
    if op == "match":
        return _match(key, raw[op], f"{at}.match")
    if op == "range":
        return _range(key, raw[op], f"{at}.range")
    if not isinstance(raw[op], bool):
        raise FilterError(f"{at}.exists must be true or false")
    return Exists(key, raw[op])


def _match(key: str, raw: Any, at: str) -> Match:
    if not isinstance(raw, Mapping) or len(raw) != 1 or not set(raw) <= {"value", "any"}:
        raise FilterError(f'{at} must be {{"value": v}} or {{"any": [v, ...]}}')
    if "value" in raw:
        values = [raw["value"]]
    else:
        values = raw["any"]
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_ANY:
            raise FilterError(f"{at}.any must be a list of 1-{MAX_ANY} values")
    kinds = set()
    for v in values:
        if not isinstance(v, str | int):  # bool is an int
            raise FilterError(
                f"{at}: match values are strings, integers or booleans, not {_json_type(v)} "
                "(use range for decimal numbers)"
            )
        kinds.add(atom(v)[0])
    if len(kinds) > 1:
        raise FilterError(f"{at}.any mixes value types; give values of one type")
    return Match(key, tuple(values))


def _range(key: str, raw: Any, at: str) -> Range:
    if not isinstance(raw, Mapping) or not raw:
        raise FilterError(f"{at} must be an object with some of {list(BOUNDS)}")
    unknown = set(raw) - set(BOUNDS)
    if unknown:
        raise FilterError(f"{at} has unknown bounds {sorted(unknown)}; use {list(BOUNDS)}")
    for name, bound in raw.items():
        if not is_number(bound) or not math.isfinite(bound):
            raise FilterError(f"{at}.{name} must be a finite number, not {_json_type(bound)}")
    return Range(key, **{name: raw[name] for name in BOUNDS if name in raw})


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, float):
        return "a decimal number"
    if isinstance(v, int | str):
        return "an integer" if isinstance(v, int) else "a string"
    return "an array" if isinstance(v, list) else "an object"
