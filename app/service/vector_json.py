"""A search body whose query vectors are read as numbers straight from the JSON text.

``orjson.loads`` makes a Python float of every component, and numpy then reads them back,
checking each one's type: for one 384-d query ~45 us of a search's request path on caches
the previous scan flushed, more than the rest of its parsing and planning together
(bench/request_cpu.py). simdjson parses the body and writes a flat array of numbers into a
float64 buffer without a Python object per number, and refuses true, false, null, strings
and objects inside it.

This is a shortcut, never a second set of rules: it answers only when it can prove that its
reading is orjson's (``load_object``), and otherwise leaves the body to that, whose errors
stay the ones clients see.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simdjson

from app.service.parsing import load_object


def load_with_vectors(raw: bytes, field: str, rows: bool) -> dict[str, Any]:
    """``load_object(raw)``, with ``field`` already a float64 array where it holds numbers
    only: a (d,) array of one vector, or with ``rows`` a (n, d) array of n vectors of one
    length. Otherwise ``field`` holds what orjson read (the vector checks say what is wrong).
    """
    body = _read(raw, field, rows)
    return body if body is not None else load_object(raw)


def _read(raw: bytes, field: str, rows: bool) -> dict[str, Any] | None:
    """The body, or None where its reading could differ from orjson's: a body not starting
    with ``{`` (simdjson skips a byte-order mark orjson refuses), repeated keys (simdjson
    finds the first, orjson keeps the last), an array outside ``field``, and whatever
    simdjson refuses (then orjson refuses it too, or reads it as an error to report, such
    as an integer beyond 64 bits)."""
    if raw[:1] != b"{":
        return None
    try:
        doc = simdjson.Parser().parse(raw)  # one per body: ~0.4 us, and nothing shared
        if not isinstance(doc, simdjson.Object):
            return None
        keys = list(doc.keys())
        if len(set(keys)) != len(keys):
            return None
        body: dict[str, Any] = {}
        for key in keys:
            value = doc[key]
            if isinstance(value, simdjson.Object):
                body[key] = value.as_dict()
            elif not isinstance(value, simdjson.Array):
                body[key] = value
            elif key != field or (numbers := _numbers(value, raw.count(b"["), rows)) is None:
                return None
            else:
                body[key] = numbers
        return body
    except (ValueError, TypeError, RuntimeError):
        return None


def _numbers(array: simdjson.Array, brackets: int, rows: bool) -> np.ndarray | None:
    """The array's numbers, if it is flat (or, with ``rows``, flat rows of one length).

    simdjson flattens nested arrays into the buffer, so flatness is proved by counting:
    every JSON array opens with a ``[`` outside strings, and the body holds no more of them
    (in strings included) than the arrays accounted for, one, or the rows' and one.
    """
    flat = np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
    if not rows:
        return flat if brackets == 1 else None
    n = len(array)
    if n == 0 or brackets != n + 1 or len(flat) % n:
        return None
    width = len(flat) // n
    for row in array:
        if not isinstance(row, simdjson.Array) or len(row) != width:
            return None
    return flat.reshape(n, width)
