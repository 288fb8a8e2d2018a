"""LangChain metadata filters as vecroute filters (README "Filtered search").

Documents are stored with payload ``{"page_content": ..., "metadata": {...}}``, so a
metadata key ``k`` is the payload path ``metadata.k`` (a dotted ``k`` reaches into nested
metadata). The forms understood, as in Chroma and PGVector:

- ``{"k": v}`` and ``{"k": {"$eq": v}}``: equal (a list value matches when an element does);
  ``{"k": {"$ne": v}}``: not equal (points without ``k`` pass too);
- ``$in`` / ``$nin`` with a list: one of / none of;
- ``$gt``, ``$gte``, ``$lt``, ``$lte`` on numbers (several in one dict make one range), and
  ``{"$between": [lo, hi]}`` (inclusive);
- ``{"k": {"$exists": bool}}``;
- ``{"$and": [...]}``, ``{"$or": [...]}``, ``{"$not": {...}}``; several keys in one dict
  are all required.

Strings, integers and booleans compare exactly; an equality to a float becomes a
one-point range. Anything else (``$like``, ``$contains``…) is a ValueError. A dict holding only
``must`` / ``should`` / ``must_not`` lists is taken as a vecroute filter and sent as is.
"""

from __future__ import annotations

from typing import Any

PREFIX = "metadata."
_RANGE = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
_NATIVE = frozenset({"must", "should", "must_not"})

Item = dict[str, Any]


def to_vecroute(langchain_filter: dict[str, Any] | None) -> dict[str, Any] | None:
    if not langchain_filter:
        return None
    if set(langchain_filter) <= _NATIVE and all(
        isinstance(v, list) for v in langchain_filter.values()
    ):
        return langchain_filter
    return {"must": _items(langchain_filter)}


def _items(node: dict[str, Any]) -> list[Item]:
    if not isinstance(node, dict) or not node:
        raise ValueError(f"a filter is a non-empty dict, not {node!r}")
    items: list[Item] = []
    for key, value in node.items():
        if key == "$and":
            items.append({"must": [f for v in _list(key, value) for f in _items(v)]})
        elif key == "$or":
            items.append({"should": [{"must": _items(v)} for v in _list(key, value)]})
        elif key == "$not":
            items.append({"must_not": [{"must": _items(value)}]})
        elif key.startswith("$"):
            raise ValueError(f"unsupported filter operator {key!r}")
        elif isinstance(value, dict):
            items.extend(_field(PREFIX + key, value))
        else:
            items.append(_equal(PREFIX + key, value))
    return items


def _field(path: str, ops: dict[str, Any]) -> list[Item]:
    items: list[Item] = []
    bounds = {_RANGE[op]: _number(op, v) for op, v in ops.items() if op in _RANGE}
    if bounds:
        items.append({"key": path, "range": bounds})
    for op, value in ops.items():
        if op in _RANGE:
            continue
        if op == "$eq":
            items.append(_equal(path, value))
        elif op == "$ne":
            items.append({"must_not": [_equal(path, value)]})
        elif op == "$in":
            items.append(_one_of(path, _list(op, value)))
        elif op == "$nin":
            items.append({"must_not": [_one_of(path, _list(op, value))]})
        elif op == "$between":
            low, high = (_number(op, v) for v in _list(op, value))
            items.append({"key": path, "range": {"gte": low, "lte": high}})
        elif op == "$exists":
            exists = {"key": path, "exists": True}
            items.append(exists if value else {"must_not": [exists]})
        else:
            raise ValueError(f"unsupported filter operator {op!r} on {path[len(PREFIX) :]!r}")
    return items


def _equal(path: str, value: Any) -> Item:
    if isinstance(value, float):
        return {"key": path, "range": {"gte": value, "lte": value}}
    return {"key": path, "match": {"value": _scalar(value)}}


def _one_of(path: str, values: list[Any]) -> Item:
    if any(isinstance(v, float) for v in values):
        return {"should": [_equal(path, v) for v in values]}
    return {"key": path, "match": {"any": [_scalar(v) for v in values]}}


def _scalar(value: Any) -> str | int | bool:
    if isinstance(value, str | int | bool):
        return value
    raise ValueError(f"filters compare strings, numbers and booleans, not {value!r}")


def _number(op: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{op} takes a number, not {value!r}")
    return value


def _list(op: str, value: Any) -> list[Any]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{op} takes a non-empty list, not {value!r}")
    if op == "$between" and len(value) != 2:
        raise ValueError("$between takes [low, high]")
    return list(value)
