"""Clusterings: versioned partitions of the collection into ``nlist`` lists.

A clustering is a matrix of representatives ``R`` (nlist x d) and a bias ``b`` (nlist); a
document goes to the list maximising ``x . r + b``. Writing every assignment rule in that one
form keeps the rule stored with the clustering and lets the same code assign documents and
route queries.

Assignment rules, chosen to agree with how each algorithm builds its clusters:

- ``kmeans``: Lloyd's k-means minimises squared L2, so documents go to the nearest centroid
  in L2 for every metric: ``argmin |x - c|^2 = argmax x.c - |c|^2 / 2``, hence
  ``b = -|c|^2 / 2``. For ``ip`` data this differs from faiss's IVF default, which assigns by
  ``x.c`` against unnormalised means and so drifts towards large-norm centroids.
- ``spherical``: k-means on the directions of the vectors with unit-norm centroids;
  assignment by inner product (``b = 0``), which for a unit centroid ignores ``|x|``.
- ``shallow`` (thesis, ch. 5): ``nlist`` documents sampled at random are the
  representatives; every document is assigned once to its best sample by the collection's
  metric (``ip``/``cosine``: ``b = 0``; ``l2``: ``b = -|s|^2 / 2``); no centroid update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import faiss
import numpy as np

from app.engine.metric import Metric, as_matrix, normalize

# faiss warns below 39 training points per centroid; beyond 256 it subsamples anyway.
MIN_POINTS_PER_LIST = 39
MAX_TRAIN_POINTS_PER_LIST = 256
# The scores ``assign`` holds at once (block x nlist float32): a fixed number of rows took
# 470 MB of scores per block at nlist 1,789, the build's and the router training's peak.
ASSIGN_BYTES = 32 << 20


class Algorithm(StrEnum):
    KMEANS = "kmeans"
    SPHERICAL = "spherical"
    SHALLOW = "shallow"


@dataclass(frozen=True, eq=False)
class Clustering:
    """Immutable: a new clustering is a new version, never an edit of an old one."""

    representatives: np.ndarray
    bias: np.ndarray
    algorithm: Algorithm
    metric: Metric
    version: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        reps = as_matrix(self.representatives)
        bias = np.ascontiguousarray(self.bias, dtype=np.float32).reshape(-1)
        if bias.shape[0] != reps.shape[0]:
            raise ValueError("bias must have one entry per representative")
        object.__setattr__(self, "representatives", reps)
        object.__setattr__(self, "bias", bias)

    @property
    def nlist(self) -> int:
        return int(self.representatives.shape[0])

    @property
    def dim(self) -> int:
        return int(self.representatives.shape[1])

    def assign(self, x: np.ndarray) -> np.ndarray:
        """List number (int64) of each prepared vector, in blocks of ``ASSIGN_BYTES`` of
        scores, whatever ``nlist``."""
        x = as_matrix(x, self.dim)
        out = np.empty(x.shape[0], dtype=np.int64)
        rows = max(1, ASSIGN_BYTES // (4 * self.nlist))
        for start in range(0, x.shape[0], rows):
            block = x[start : start + rows]
            scores = block @ self.representatives.T
            scores += self.bias
            out[start : start + len(block)] = np.argmax(scores, axis=1)
        return out


def auto_nlist(n: int, lists_per_root: float = 4.0) -> int:
    """Lists for ``n`` vectors: about ``lists_per_root * sqrt(n)``, at least 39 points per list.

    4 * sqrt(n) gives short lists (cheap probes) and is where learned routing helps most
    for float32 lists; bench/engine.py measures it against sqrt(n). Code lists that scan
    long lists cheaply prefer fewer (``codes.preferred_nlist``).
    """
    if n < 2 * MIN_POINTS_PER_LIST:
        return 1
    return max(1, min(round(lists_per_root * math.sqrt(n)), n // MIN_POINTS_PER_LIST))


def train_clustering(
    x: np.ndarray,
    nlist: int,
    algorithm: Algorithm,
    metric: Metric,
    *,
    seed: int = 0,
    niter: int = 20,
    version: int = 0,
) -> Clustering:
    """Cluster prepared vectors ``x`` (see ``metric.prepare``) into ``nlist`` lists.

    Large inputs are subsampled to 256 points per list for training; every vector is still
    assigned later by ``Clustering.assign``.
    """
    x = as_matrix(x)
    n, d = x.shape
    if not 1 <= nlist <= n:
        raise ValueError(f"nlist must be in [1, {n}], got {nlist}")
    rng = np.random.default_rng(seed)
    params: dict[str, Any] = {"seed": seed, "nlist": nlist, "n_points": n}

    if algorithm is Algorithm.SHALLOW:
        reps = x[np.sort(rng.choice(n, size=nlist, replace=False))].copy()
        bias = _l2_bias(reps) if metric is Metric.L2 else np.zeros(nlist, np.float32)
        return Clustering(reps, bias, algorithm, metric, version, params)

    n_train = min(n, MAX_TRAIN_POINTS_PER_LIST * nlist)
    sample = x[np.sort(rng.choice(n, size=n_train, replace=False))] if n_train < n else x
    spherical = algorithm is Algorithm.SPHERICAL
    if spherical:
        sample = normalize(sample)
    params |= {"niter": niter, "n_train": n_train}
    if nlist == 1:
        centroids = sample.mean(axis=0, keepdims=True)
        if spherical:
            centroids = normalize(centroids)
    else:
        kmeans = faiss.Kmeans(
            d,
            nlist,
            niter=niter,
            seed=seed,
            spherical=spherical,
            max_points_per_centroid=MAX_TRAIN_POINTS_PER_LIST,
            min_points_per_centroid=1,
        )
        kmeans.train(sample)
        centroids = kmeans.centroids
    bias = np.zeros(nlist, np.float32) if spherical else _l2_bias(centroids)
    return Clustering(centroids, bias, algorithm, metric, version, params)


def _l2_bias(reps: np.ndarray) -> np.ndarray:
    return (-0.5 * np.einsum("ij,ij->i", reps, reps)).astype(np.float32)
