"""Recall against nprobe for one routing, and the smallest nprobe that keeps a promise.

A search may ask for ``target_recall`` instead of ``nprobe``. The promise is about mean
recall@k over queries like the logged ones, so the table is measured on held-out logged
queries, and each entry carries a one-sided lower confidence bound (mean minus ``z``
standard errors of the per-query recall). Choosing by the bound, not the mean, makes the
promise hold on new queries far more often than a point estimate would (measured in
bench/target_recall.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from app.engine.gate import neighbour_ranks
from app.engine.routing import Router

# One-sided 95%: the bound is below the true mean recall for 19 tables in 20.
LOWER_BOUND_Z = 1.645


@dataclass(frozen=True)
class RecallTable:
    """Held-out recall@k of one routing at every nprobe from 1 to ``len(recall)``."""

    k: int
    n_queries: int
    recall: list[float]  # mean recall@k at nprobe = index + 1
    lower: list[float]  # its one-sided lower confidence bound
    routing: str = "centroid"  # what was measured: "centroid" or "learned"
    clustering_version: int | None = None
    router_version: int | None = None

    def nprobe_for(self, target: float) -> int | None:
        """Smallest nprobe whose lower bound reaches ``target``; None if none does."""
        for nprobe, bound in enumerate(self.lower, start=1):
            if bound >= target:
                return nprobe
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The table at nprobe 1, 2, 4, ... and nlist: what a person reads in collection info."""
        nlist = len(self.recall)
        nprobes = sorted({2**i for i in range(nlist.bit_length()) if 2**i <= nlist} | {nlist})
        return {
            "routing": self.routing,
            "clustering_version": self.clustering_version,
            "router_version": self.router_version,
            "k": self.k,
            "n_queries": self.n_queries,
            "nprobe": nprobes,
            "recall": [self.recall[p - 1] for p in nprobes],
            "recall_lower_bound": [self.lower[p - 1] for p in nprobes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecallTable:
        return cls(**d)


def measure(
    router: Router,
    queries: np.ndarray,
    neighbour_lists: np.ndarray,
    *,
    k: int = 10,
    z: float = LOWER_BOUND_Z,
    routing: str = "centroid",
    router_version: int | None = None,
) -> RecallTable:
    """Recall@k of ``router`` at every nprobe on prepared held-out ``queries``.

    ``neighbour_lists`` (n, >=k) holds the list of each query's exact top-k (see
    ``labels.list_labels``); IVF-Flat finds a neighbour iff its list is probed, so recall
    follows from the lists' ranks without searching.
    """
    ranks = neighbour_ranks(router, queries, neighbour_lists)[:, :k]
    n = ranks.shape[0]
    if n == 0:
        raise ValueError("a recall table needs at least one query")
    # found[i, p-1]: share of query i's top-k found with p probes.
    first_probe = np.minimum(ranks, router.nlist)  # rank r is found from nprobe r + 1 on
    counts = np.zeros((n, router.nlist + 1), dtype=np.float64)
    np.add.at(counts, (np.arange(n)[:, None], first_probe), 1.0)
    found = np.cumsum(counts, axis=1)[:, : router.nlist] / k
    mean = found.mean(axis=0)
    se = found.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.ones_like(mean)
    return RecallTable(
        k=k,
        n_queries=int(n),
        recall=[round(float(v), 6) for v in mean],
        lower=[round(float(v), 6) for v in np.clip(mean - z * se, 0.0, 1.0)],
        routing=routing,
        clustering_version=router.clustering_version,
        router_version=router_version,
    )
