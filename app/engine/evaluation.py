"""Quality measures of a search or a routing against exact ground truth.

Plain functions over id matrices, so the benchmark, the router trainer and the tests all
score the same way. Ids are int64 with ``-1`` as padding (faiss's convention): padding never
counts as a hit.
"""

from __future__ import annotations

import numpy as np


def _ids(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a (n, k) matrix, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer ids, got {a.dtype}")
    return a.astype(np.int64, copy=False)


def recall_at_k(found_ids: np.ndarray, true_ids: np.ndarray, k: int) -> float:
    """Mean share of the exact top-``k`` found among the first ``k`` results.

    A result list shorter than ``k`` (or padded with -1) simply finds fewer; the
    denominator stays ``k`` so a search cannot look better by returning less.
    """
    found = _ids(found_ids, "found_ids")
    true = _ids(true_ids, "true_ids")
    if k < 1:
        raise ValueError("k must be at least 1")
    if found.shape[0] != true.shape[0]:
        raise ValueError("found_ids and true_ids must have one row per query")
    if true.shape[1] < k:
        raise ValueError(f"true_ids has {true.shape[1]} columns, fewer than k={k}")
    n = found.shape[0]
    if n == 0:
        return 0.0
    found_k = found[:, :k]
    true_k = true[:, :k]
    # (n, k', k) equality cube: k is small (<= 100), so this is cheap and exact.
    hit = (found_k[:, :, None] == true_k[:, None, :]) & (found_k[:, :, None] >= 0)
    # A true id counts once even if a (buggy) result list repeats it.
    hits = hit.any(axis=1).sum()
    return float(hits) / (n * k)


def top1_accuracy(found_ids: np.ndarray, true_ids: np.ndarray) -> float:
    """Share of queries whose first result is the exact nearest neighbour."""
    found = _ids(found_ids, "found_ids")
    true = _ids(true_ids, "true_ids")
    if found.shape[0] != true.shape[0]:
        raise ValueError("found_ids and true_ids must have one row per query")
    if found.shape[0] == 0:
        return 0.0
    ok = (found[:, 0] == true[:, 0]) & (true[:, 0] >= 0)
    return float(ok.mean())


def routing_accuracy(probed_lists: np.ndarray, true_lists: np.ndarray) -> float:
    """Share of queries whose true list (holding the nearest neighbour) was probed."""
    probed = _ids(probed_lists, "probed_lists")
    true = np.asarray(true_lists).astype(np.int64, copy=False).reshape(-1)
    if probed.shape[0] != true.shape[0]:
        raise ValueError("probed_lists and true_lists must have one row per query")
    if probed.shape[0] == 0:
        return 0.0
    ok = ((probed == true[:, None]) & (probed >= 0)).any(axis=1)
    return float(ok.mean())


def mean_probes(probed_lists: np.ndarray) -> float:
    """Mean number of lists actually probed per query (-1 padding excluded)."""
    probed = _ids(probed_lists, "probed_lists")
    if probed.shape[0] == 0:
        return 0.0
    return float((probed >= 0).sum(axis=1).mean())
