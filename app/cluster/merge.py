"""The coordinator's merge of the shards' top-k into the collection's top-k.

The shards hold disjoint lists, so an id appears in at most one part and the merged top-k
of the parts' top-k is the top-k over every probed list: what the single-process index
returns for the same probes (up to the order of exactly equal scores).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def merge_topk(
    parts: Sequence[tuple[np.ndarray, np.ndarray]], n: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (n, k), best first, from parts of (scores (n, k_i), ids (n, k_i)).

    Padding (-inf, -1) sorts last and stays padding; no part at all is all padding.
    """
    if not parts:
        return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
    scores = np.concatenate([np.asarray(s, np.float32).reshape(n, -1) for s, _ in parts], axis=1)
    ids = np.concatenate([np.asarray(i, np.int64).reshape(n, -1) for _, i in parts], axis=1)
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    if scores.shape[1] < k:  # fewer candidates than k: pad, then sort as usual
        pad = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def shards_touched(probes: np.ndarray, shard_of: np.ndarray) -> np.ndarray:
    """Per query, how many distinct shards its probe lists (-1 padded) fall in."""
    probes = np.asarray(probes, dtype=np.int64)
    n = len(probes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    shards = int(shard_of.max(initial=0)) + 1
    rows = np.repeat(np.arange(n), probes.shape[1])
    flat = probes.reshape(-1)
    valid = flat >= 0
    hit = np.zeros((n, shards), dtype=bool)
    hit[rows[valid], shard_of[flat[valid]]] = True
    return hit.sum(axis=1)
