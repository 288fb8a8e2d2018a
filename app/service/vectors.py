"""Vector validation with numpy: one array conversion instead of a check per element."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.service.errors import InvalidInput

# Larger components overflow float32 in a score (a dot product or squared distance over up
# to 65536 dimensions stays below 3.4e38 with |x| <= 1e16): the score would be inf or NaN.
MAX_COMPONENT = 1e16


def as_vectors(values: Any, dim: int, field: str) -> np.ndarray:
    """A (n, dim) float32 matrix from a list of lists, or InvalidInput saying why not.

    numpy infers the dtype without being told one, so strings, nulls and ragged rows show
    up as a non-numeric dtype instead of being coerced. Values beyond float32's range turn
    into inf in the cast, so finiteness is checked after it.
    """
    if not isinstance(values, list) or not all(isinstance(v, list) for v in values):
        raise InvalidInput(f"{field} must be a list of vectors (lists of {dim} numbers)")
    if not values:
        return np.empty((0, dim), dtype=np.float32)
    try:
        m = np.array(values)
    except (TypeError, ValueError):  # ragged rows
        raise InvalidInput(f"{field}: every vector must have {dim} components") from None
    if m.dtype.kind not in "fi":
        raise InvalidInput(f"{field}: vector components must be numbers")
    if m.ndim != 2 or m.shape[1] != dim:
        got = m.shape[1] if m.ndim == 2 else "?"
        raise InvalidInput(f"{field}: expected dimension {dim}, got {got}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = m.astype(np.float32)
    if not np.isfinite(out).all():
        raise InvalidInput(f"{field}: vector components must be finite float32 numbers")
    if np.abs(out).max(initial=0.0) > MAX_COMPONENT:
        raise InvalidInput(f"{field}: vector components must be within +-{MAX_COMPONENT:g}")
    return out


def as_vector(value: Any, dim: int, field: str = "vector") -> np.ndarray:
    """One query vector as a (1, dim) matrix."""
    if not isinstance(value, list):
        raise InvalidInput(f"{field} must be a list of {dim} numbers")
    return as_vectors([value], dim, field)
