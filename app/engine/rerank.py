"""Re-ranking helpers for code lists: the centre term residual codes need, the best k.

Both run once per single-query search, so they avoid numpy calls that cost more in
overhead than in work (``take_along_axis``, gathering every centre).
"""

from __future__ import annotations

import faiss
import numpy as np

from app.engine.clustering import Clustering
from app.engine.codes import needs_centre_distance

# Candidates beyond which the best k are partitioned out before sorting.
PARTIAL_SORT_FROM = 512
# Probed centres gathered at once for residual codes' centre terms (x d floats).
CENTRE_BLOCK = 4096


def centre_terms(
    ivf: faiss.IndexIVF, clustering: Clustering | None, q: np.ndarray, probe: np.ndarray
) -> np.ndarray | None:
    """What residual product codes add per probed list: the query's inner product with the
    list's centre (ip/cosine) or its squared distance to it (l2); None when not needed.

    Only the probed centres are read (a few per query, not all ``nlist``), in blocks of
    queries so a large batch never gathers more than a few MB at once.
    """
    if not needs_centre_distance(ivf) or clustering is None:
        return None
    reps = clustering.representatives
    l2 = ivf.metric_type == faiss.METRIC_L2
    out = np.empty(probe.shape, np.float32)
    block = max(1, CENTRE_BLOCK // max(1, probe.shape[1]))
    for start in range(0, len(q), block):
        rows = slice(start, start + block)
        centres = reps[np.maximum(probe[rows], 0)]  # (b, w, d)
        if l2:
            diff = centres - q[rows, None, :]
            out[rows] = np.einsum("bwd,bwd->bw", diff, diff)
        else:
            out[rows] = np.einsum("bwd,bd->bw", centres, q[rows])
    return out


def best(scores: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best (score, id) per row, best first; -inf / -1 padding.

    Plain fancy indexing rather than ``take_along_axis``: this runs once per single-query
    call, where numpy's per-call overhead is most of the cost.
    """
    n, width = scores.shape
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
