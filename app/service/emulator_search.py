"""Search with paper 002's emulator: it proposes, exact scores decide.

Level 1 picks ``nprobe`` lists, level 2 proposes each list's best members; every candidate
is re-scored with the vector the index holds now, so returned scores are exact and the
result is the exact top-k of the candidates. Writes after training: a deleted id is no
longer held, so it is never re-scored nor returned; a point written since the emulator's
training seq (new, or with a new vector) is a candidate of every query until the next
emulator is trained, so it is always reachable.
"""

from __future__ import annotations

import numpy as np

from app.engine.emulator import Emulator
from app.engine.ivf import SearchResult
from app.engine.metric import Metric, prepare
from app.service.live import LiveCollection


def emulator_search(
    live: LiveCollection,
    emulator: Emulator,
    fresh: np.ndarray,
    queries: np.ndarray,
    k: int,
    nprobe: int,
    per_list: int,
) -> SearchResult:
    """``scanned`` counts the members level 2 scored plus the fresh points, per query;
    ``candidates`` those re-scored exactly (mean per query)."""
    index = live.vector_index
    q = prepare(queries, index.metric, index.dim)
    proposed, scored = emulator.propose(q, nprobe, per_list)
    n = q.shape[0]
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    ids = np.full((n, k), -1, dtype=np.int64)
    candidates = 0
    for i in range(n):
        found, vectors = index.vectors(np.unique(np.concatenate([proposed[i], fresh])))
        candidates += len(found)
        s = exact_scores(vectors, q[i], index.metric)
        top = np.argsort(-s, kind="stable")[:k]
        scores[i, : len(top)] = s[top]
        ids[i, : len(top)] = found[top]
    probes = min(nprobe, emulator.nlist)
    scanned = (scored + n * len(fresh)) / n
    return SearchResult(scores, ids, float(probes), scanned, candidates / n)


def exact_scores(vectors: np.ndarray, q: np.ndarray, metric: Metric) -> np.ndarray:
    """The metric's similarity of stored vectors to a prepared query (higher is better)."""
    if metric is Metric.L2:
        diff = vectors - q
        return -np.einsum("ij,ij->i", diff, diff)
    return vectors @ q
