"""Vector validation with numpy: one array conversion instead of a check per element."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.service.errors import InvalidInput

# Larger components overflow float32 in a score (a dot product or squared distance over up
# to 65536 dimensions stays below 3.4e38 with |x| <= 1e16): the score would be inf or NaN.
MAX_COMPONENT = 1e16
_MAX_SQUARES = MAX_COMPONENT * MAX_COMPONENT
# Cosine normalises in float32, whose squares below ~1e-38 lose their digits: a vector's
# largest component must be at least this (its square, 1e-30, keeps them).
MIN_DIRECTION = 1e-15


def as_vectors(values: Any, dim: int, field: str) -> np.ndarray:
    """A (n, dim) float32 matrix from a list of lists, or InvalidInput saying why not.

    numpy infers the dtype without being told one, so strings, nulls and ragged rows show
    up as a non-numeric dtype instead of being coerced. The range is checked before the
    cast to float32, so that nothing overflows in it.
    """
    if isinstance(values, np.ndarray):  # read as numbers already (app/service/vector_json)
        return _checked(values, None, dim, field)
    if not isinstance(values, list) or not all(isinstance(v, list) for v in values):
        raise InvalidInput(f"{field} must be a list of vectors (lists of {dim} numbers)")
    if not values:
        return np.empty((0, dim), dtype=np.float32)
    try:
        m = np.array(values)
    except (TypeError, ValueError):  # ragged rows
        raise InvalidInput(f"{field}: every vector must have {dim} components") from None
    return _checked(m, values, dim, field)


def check_direction(vectors: np.ndarray, metric: str, field: str) -> None:
    """Cosine compares directions. A zero vector has none, and one whose components are all
    below ``MIN_DIRECTION`` has none float32 can compute (their squares underflow): either
    would score 0 or garbage against everything. Mostly one numpy call for one query: a
    search runs this on caches its previous scan flushed."""
    if metric != "cosine":
        return
    # Every component is at most the largest, so d * largest**2 >= the sum of squares: for
    # one query a dot product clears all but those whose squares are all near that bound.
    least = vectors.shape[1] * MIN_DIRECTION * MIN_DIRECTION
    if len(vectors) == 1 and np.vdot(vectors, vectors) >= least:
        return
    largest = np.abs(vectors).max(axis=1, initial=0.0)
    if not (largest[0] >= MIN_DIRECTION if len(vectors) == 1 else (largest >= MIN_DIRECTION).all()):
        raise InvalidInput(
            f"{field}: a vector whose components are all below {MIN_DIRECTION:g} in magnitude "
            "(a zero vector, say) has no direction for cosine to compare: scale it up"
        )


def as_vector(value: Any, dim: int, field: str = "vector") -> np.ndarray:
    """One query vector as a (1, dim) matrix, by the rules of ``as_vectors``.

    Converted as a flat list: numpy takes about twice as long over ``[value]``, a nested
    list, whose shape and dtype it infers level by level. A float64 array is one read as
    numbers already (app/service/vector_json.py).
    """
    if isinstance(value, np.ndarray):
        return _checked(value.reshape(1, -1), None, dim, field)
    if not isinstance(value, list):
        raise InvalidInput(f"{field} must be a list of {dim} numbers")
    try:
        v = np.array(value)
    except (TypeError, ValueError):  # nested lists of unequal lengths
        raise InvalidInput(f"{field}: every vector must have {dim} components") from None
    return _checked(v.reshape(1, -1) if v.ndim == 1 else v[None], [value], dim, field)


def _checked(m: np.ndarray, rows: list[Any] | None, dim: int, field: str) -> np.ndarray:
    """``m``, numpy's reading of ``rows`` (None: read from JSON as numbers, so no true or
    false among them), as float32 if it is a (n, dim) matrix of finite numbers within
    range."""
    if m.dtype.kind not in "fi":
        raise InvalidInput(f"{field}: vector components must be numbers")
    if m.ndim != 2 or m.shape[1] != dim:
        got = m.shape[1] if m.ndim == 2 else "?"
        raise InvalidInput(f"{field}: expected dimension {dim}, got {got}")
    # NaN fails the comparisons, inf and values beyond MAX_COMPONENT exceed the bound, and
    # below it the cast to float32 cannot overflow. A float matrix is first checked by its
    # sum of squares (one BLAS call: within MAX_COMPONENT**2, every component is within the
    # bound); only a matrix failing that, or of integers (which could wrap), takes the
    # per-component pass.
    if not (m.dtype.kind == "f" and np.vdot(m, m) <= _MAX_SQUARES) and not (
        np.abs(m, dtype=np.float64).max(initial=0.0) <= MAX_COMPONENT
    ):
        raise InvalidInput(
            f"{field}: vector components must be finite numbers within +-{MAX_COMPONENT:g}"
        )
    out = m.astype(np.float32)
    if rows is not None and _holds_bool(out, rows):
        raise InvalidInput(f"{field}: vector components must be numbers, not true or false")
    return out


def _holds_bool(m: np.ndarray, rows: list[Any]) -> bool:
    """Whether JSON ``true`` or ``false`` stands among the numbers of ``rows`` (read as ``m``,
    within range). numpy reads them as 1 and 0 without a trace in the dtype, so only rows
    holding a 0 or a 1 (x * x == x: ~1.5 us for one query) are looked at element by
    element."""
    binary = m * m == m
    if not binary.any():
        return False
    suspects = np.flatnonzero(binary.any(axis=1)).tolist()
    return any(bool in set(map(type, rows[i])) for i in suspects)
