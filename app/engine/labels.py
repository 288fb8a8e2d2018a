"""Free training labels for learned routing: exact neighbours and the lists that hold them.

Papers 000/001: the relevant list for a query is the one holding its exact nearest neighbour
(objective ``top1``); generalised to every list holding one of the exact top-k (``topk``).
Both come from one exact search, so labelling costs one flat scan of the collection per
block of queries and never needs a human.
"""

from __future__ import annotations

from enum import StrEnum

import faiss
import numpy as np

from app.engine.metric import Metric, as_matrix, faiss_metric, prepare

# 4096 queries x 60k docs of float32 distances is ~1 GB inside faiss; 1024 keeps it ~250 MB.
LABEL_BLOCK = 1024
# ``graded`` temperature, in units of the 1st-to-k-th score spread: on the Debian data 0.25
# kept the recall@10 of ``topk`` and the top-1 of lower values (bench/routing.py --full).
LABEL_TEMPERATURE = 0.25


class Objective(StrEnum):
    """What a router is trained to rank first.

    ``top1``: the list of the exact nearest neighbour (softmax cross-entropy = MRR surrogate).
    ``topk``: the lists of the exact top-k, each weighted by how many of them it holds, so the
    softmax estimates the share of the top-k a list holds (a recall@k surrogate).
    ``mixed``: a convex combination of the two targets (``TrainConfig.top1_weight``).
    ``graded``: the lists of the exact top-k, each neighbour weighted by the softmax of its
    exact score at a temperature (``graded_weights``): near-ties of the nearest neighbour
    share the target, clear losers get almost nothing. Temperature 0 is ``top1``, infinity
    is ``topk``; it needs the neighbours' scores (``exact_search``).
    """

    TOP1 = "top1"
    TOPK = "topk"
    MIXED = "mixed"
    GRADED = "graded"


def exact_search(
    docs: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: Metric,
    *,
    block: int = LABEL_BLOCK,
    prepared: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's exact top-k: (n, k) int64 row indices into ``docs``, best first, and
    (n, k) float32 scores, higher is better (``-squared distance`` for l2).

    Vectors are prepared here (unit-norm for cosine) so callers may pass raw data;
    ``prepared``: both already are (as ``prepare`` leaves them), and ``docs`` is read in
    place, without the copy that normalising a whole collection takes. Queries go through
    faiss in blocks to bound memory; rows are padded with id -1 and score -inf when the
    collection holds fewer than ``k`` documents.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    d = as_matrix(docs) if prepared else prepare(docs, metric)
    q = as_matrix(queries, d.shape[1]) if prepared else prepare(queries, metric, d.shape[1])
    ids_out = np.full((q.shape[0], k), -1, dtype=np.int64)
    scores_out = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
    kk = min(k, d.shape[0])
    sign = -1.0 if metric is Metric.L2 else 1.0
    for start in range(0, q.shape[0], block):
        # faiss.knn reads ``d`` in place, where an IndexFlat would hold a copy of it.
        dist, ids = faiss.knn(q[start : start + block], d, kk, faiss_metric(metric))
        ids_out[start : start + len(ids), :kk] = ids
        scores_out[start : start + len(ids), :kk] = sign * dist
    return ids_out, scores_out


def exact_neighbours(
    docs: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: Metric,
    *,
    block: int = LABEL_BLOCK,
    prepared: bool = False,
) -> np.ndarray:
    """(n, k) int64 row indices of each query's exact top-k, best first (see ``exact_search``)."""
    return exact_search(docs, queries, k, metric, block=block, prepared=prepared)[0]


def list_labels(neighbours: np.ndarray, doc_lists: np.ndarray) -> np.ndarray:
    """(n, k) list number of each exact neighbour (-1 stays -1); column 0 is the top-1 label."""
    nb = np.asarray(neighbours, dtype=np.int64)
    if nb.ndim != 2:
        raise ValueError(f"neighbours must be a (n, k) matrix, got shape {nb.shape}")
    lists = np.asarray(doc_lists, dtype=np.int64).reshape(-1)
    return np.where(nb >= 0, lists[np.maximum(nb, 0)], -1)


def graded_weights(scores: np.ndarray, temperature: float) -> np.ndarray:
    """(n, k) softmax of each query's exact neighbour scores at ``temperature``.

    The temperature is relative to the mean spread ``s_1 - s_k`` between each query's first
    and last neighbour, so one value fits ip, cosine and l2 collections alike. Exact ties
    get equal weight; padding (-inf) gets none.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or not np.isfinite(s[:, 0]).all():
        raise ValueError("scores must be a (n, k) matrix with a finite first column")
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    full = np.isfinite(s).all(axis=1)
    spread = float(np.mean(s[full, 0] - s[full, -1])) if full.any() else 0.0
    z = (s - s[:, :1]) / (temperature * max(spread, 1e-12))
    w = np.exp(z)  # exp(-inf) = 0 for padding; the first column is exp(0) = 1
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def target_weights(
    neighbour_lists: np.ndarray,
    objective: Objective,
    k: int,
    top1_weight: float = 0.5,
    *,
    scores: np.ndarray | None = None,
    temperature: float = LABEL_TEMPERATURE,
) -> np.ndarray:
    """(n, k) weight of each neighbour's list in the query's target distribution.

    The target of query i is ``sum_j w[i, j] * onehot(neighbour_lists[i, j])``; rows sum to 1,
    so a list holding m of the top-k gets weight m/k under ``topk``. Training then minimises
    ``-sum_j w[i, j] log p(neighbour_lists[i, j] | q_i)``, which is exactly the soft-target
    cross-entropy without materialising an (n, nlist) target matrix.
    """
    lists = np.asarray(neighbour_lists, dtype=np.int64)
    if lists.ndim != 2 or lists.shape[1] < k:
        raise ValueError(f"neighbour_lists must be a (n, >={k}) matrix, got {lists.shape}")
    lists = lists[:, :k]
    valid = lists >= 0
    if not valid[:, 0].all():
        raise ValueError("every query needs at least one neighbour")
    top1 = np.zeros(lists.shape, dtype=np.float32)
    top1[:, 0] = 1.0
    if objective is Objective.TOP1:
        return top1
    topk = valid / valid.sum(axis=1, keepdims=True)
    topk = topk.astype(np.float32)
    if objective is Objective.TOPK:
        return topk
    if objective is Objective.GRADED:
        if scores is None:
            raise ValueError("the graded objective needs the neighbours' exact scores")
        sc = np.asarray(scores)
        if sc.shape[0] != lists.shape[0] or sc.shape[1] < k:
            raise ValueError(f"scores must be a ({lists.shape[0]}, >={k}) matrix")
        return graded_weights(np.where(valid, sc[:, :k], -np.inf), temperature)
    if not 0.0 <= top1_weight <= 1.0:
        raise ValueError("top1_weight must be in [0, 1]")
    return (top1_weight * top1 + (1.0 - top1_weight) * topk).astype(np.float32)
