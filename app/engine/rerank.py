"""Re-ranking helpers for code lists: the centre term residual codes need, the best k.

Both run once per single-query search, so they avoid numpy calls that cost more in
overhead than in work (``take_along_axis``, gathering every centre).
"""

from __future__ import annotations

import faiss
import numpy as np

from app.engine.clustering import Clustering
from app.engine.codes import needs_centre_distance
from app.engine.metric import products_by_row

# Candidates beyond which the best k are partitioned out before sorting.
PARTIAL_SORT_FROM = 512


def centre_terms(
    ivf: faiss.IndexIVF,
    clustering: Clustering | None,
    q: np.ndarray,
    probe: np.ndarray,
    *,
    padded: bool = True,
) -> np.ndarray | None:
    """What residual product codes add per probed list: the query's inner product with the
    list's centre (ip/cosine) or its squared distance to it (l2); None when not needed.

    One faiss call reads only the probed centres, in place (no gathered copy).
    ``padded``: ``probe`` may hold -1; those entries get the first centre's term, a finite
    value the scan ignores (-inf would wreck fast-scan's quantised bias range).
    """
    if not needs_centre_distance(ivf) or clustering is None:
        return None
    lists = np.maximum(probe, 0) if padded else probe
    l2 = ivf.metric_type == faiss.METRIC_L2
    return products_by_row(q, clustering.representatives, lists, l2=l2)


def best(scores: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best (score, id) per row, best first; -inf / -1 padding.

    Plain fancy indexing rather than ``take_along_axis``: this runs once per single-query
    call, where numpy's per-call overhead is most of the cost.
    """
    n, width = scores.shape
    if n == 1 and k <= width <= PARTIAL_SORT_FROM:
        # One query: its column order is also its flat order, so ``take`` gathers the
        # (1, k) results directly (no row indices, no fancy indexing, no reshaping).
        order = np.negative(scores).argsort(axis=1, kind="stable")[:, :k]
        top_scores = scores.take(order).astype(np.float32, copy=False)
        top_ids = candidates.take(order)
        if top_scores.item(-1) == -np.inf:  # sorted: -inf only at the end
            top_ids[top_scores == -np.inf] = -1
        return top_scores, top_ids
    rows = np.arange(n)[:, None]
    if width > PARTIAL_SORT_FROM:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = part[rows, np.argsort(-scores[rows, part], axis=1, kind="stable")]
    else:  # a few hundred candidates: one sort is cheaper than partition, then sort
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_scores = scores[rows, order].astype(np.float32, copy=False)
    top_ids = candidates[rows, order]
    top_ids[top_scores == -np.inf] = -1
    if width < k:  # fewer candidates than asked: pad
        pad = k - width
        top_scores = np.pad(top_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        top_ids = np.pad(top_ids, ((0, 0), (0, pad)), constant_values=-1)
    return top_scores, top_ids
