"""Metrics and the one score convention: higher is better, for every metric.

``ip`` scores are inner products, ``cosine`` scores are inner products of L2-normalised
vectors (the engine normalises at the door), ``l2`` scores are negative squared distances.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import faiss
import numpy as np


class Metric(StrEnum):
    IP = "ip"
    COSINE = "cosine"
    L2 = "l2"


def as_matrix(x: np.ndarray, dim: int | None = None) -> np.ndarray:
    """A C-contiguous float32 (n, d) view or copy of ``x``; fails at the door on a wrong shape."""
    m = np.ascontiguousarray(x, dtype=np.float32)
    if m.ndim == 1:
        m = m.reshape(1, -1)
    if m.ndim != 2:
        raise ValueError(f"expected a (n, d) matrix, got shape {x.shape}")
    if dim is not None and m.shape[1] != dim:
        raise ValueError(f"expected dimension {dim}, got {m.shape[1]}")
    return m


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero (they score 0 against everything).

    A float32 copy renormalised in place by faiss: one C call, where numpy's norm, guard and
    division cost ~10 us of call overhead on a single query.
    """
    out = np.array(x, dtype=np.float32, order="C")
    faiss.normalize_L2(out)
    return out


def prepare(x: np.ndarray, metric: Metric, dim: int | None = None) -> np.ndarray:
    """Vectors as the engine stores and compares them: float32, unit-norm for cosine."""
    m = as_matrix(x, dim)
    return normalize(m) if metric is Metric.COSINE else m


def prepare_in_place(x: np.ndarray, metric: Metric) -> np.ndarray:
    """``prepare`` of a C-contiguous float32 (n, d) array its caller gives up: normalised in
    place for cosine, where ``prepare`` would hold a second copy of a whole collection."""
    if metric is Metric.COSINE:
        faiss.normalize_L2(x)
    return x


def faiss_metric(metric: Metric) -> int:
    return faiss.METRIC_L2 if metric is Metric.L2 else faiss.METRIC_INNER_PRODUCT


def to_scores(distances: np.ndarray, metric: Metric) -> np.ndarray:
    """faiss's raw output turned into scores (higher is better)."""
    return -distances if metric is Metric.L2 else distances


def products_by_row(q: np.ndarray, y: np.ndarray, rows: np.ndarray, *, l2: bool) -> np.ndarray:
    """(n, c) inner products of each query of ``q`` (n, d) with its rows ``rows`` (n, c) of
    ``y``, or squared L2 distances (``l2``); a -1 row gives -inf (+inf for ``l2``).

    One faiss call that reads the named rows of ``y`` in place: no gathered copy, and one
    call where numpy needs a gather, a product and their overhead. All three arrays must be
    C-contiguous (float32, float32, int64).
    """
    n, c = rows.shape
    out = np.empty((n, c), np.float32)
    lib: Any = faiss  # the *_by_idx functions are missing from faiss's stubs
    by_row = lib.fvec_L2sqr_by_idx if l2 else lib.fvec_inner_products_by_idx
    by_row(
        faiss.swig_ptr(out),
        faiss.swig_ptr(q),
        faiss.swig_ptr(y),
        faiss.swig_ptr(rows),
        y.shape[1],
        n,
        c,
    )
    return out
