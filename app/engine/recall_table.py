"""Recall against nprobe for one routing, and the smallest nprobe that keeps a promise.

A search may ask for ``target_recall`` instead of ``nprobe``. The promise is about mean
recall@k over queries like the logged ones, so the table is measured on held-out logged
queries, and each entry carries a one-sided lower confidence bound (mean minus ``z``
standard errors of the per-query recall). Choosing by the bound, not the mean, makes the
promise hold on new queries far more often than a point estimate would (measured in
bench/target_recall.py).

On float lists a neighbour is found iff its list is probed, so the table follows from the
lists' ranks. On code lists it may also be lost to the codes: ranked below the ``rerank``
candidates. ``measure`` then takes which neighbours the real coded search keeps at a few
nprobes (``kept_neighbours``): a neighbour kept at nprobe ``p`` is kept at every smaller
nprobe that probes its list (fewer candidates compete for the same places), so the table
between two measured nprobes is a lower bound of the truth. The table says which codes it
was measured with (``code_stamp``), and serves only those.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from app.engine.clustering import Clustering
from app.engine.codes import CATALYZER_KINDS, Quantization
from app.engine.gate import neighbour_ranks
from app.engine.ivf import VectorIndex
from app.engine.routing import Router

# One-sided 95%: the bound is below the true mean recall for 19 tables in 20.
LOWER_BOUND_Z = 1.645
# Held-out queries code lists are searched with at each measured nprobe (float lists need no
# search: every held-out query counts there), and the codes one such search may score.
CODED_QUERIES = 1000
CODED_SCORES = 200_000_000


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
    codes: dict[str, Any] | None = None  # ``code_stamp`` of the lists measured (None: float)
    # The measured learned router's ``AdaptiveCalibration.to_dict()``, measured with the
    # table: it serves adaptive probing in place of the one stored with the router.
    adaptive: dict[str, Any] | None = None

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
        nprobes = measured_nprobes(len(self.recall))
        return {
            "routing": self.routing,
            "clustering_version": self.clustering_version,
            "router_version": self.router_version,
            "k": self.k,
            "n_queries": self.n_queries,
            "nprobe": nprobes,
            "recall": [self.recall[p - 1] for p in nprobes],
            "recall_lower_bound": [self.lower[p - 1] for p in nprobes],
            "codes": self.codes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecallTable:
        return cls(**d)


def code_stamp(codes: Quantization, catalyzer_version: int | None) -> dict[str, Any] | None:
    """What a table or calibration says of the lists it was measured on, from a collection's
    codes and catalyzer version: None for float lists (a catalyzer kind's lists are float
    until its catalyzer is trained), else the codes' description and that version."""
    if not codes.compressed:
        return None
    if codes.kind not in CATALYZER_KINDS:
        return codes.to_dict()
    if catalyzer_version is None:
        return None
    return codes.to_dict() | {"catalyzer_version": catalyzer_version}


def coded_index(codes: Quantization, clustering: Clustering, docs: np.ndarray) -> VectorIndex:
    """Prepared ``docs`` (the jobs' exact neighbours are of them) under their row numbers
    in lists of ``codes`` with its codebook or catalyzer, as a serving index holds them
    (codebooks of its own if none is attached); read in place, not copied to be prepared."""
    index = VectorIndex(clustering.dim, clustering.metric, clustering, codes)
    index.load(np.arange(len(docs), dtype=np.int64), docs, prepared=True)
    if not index.coded:
        index.set_quantization(codes)
    return index


def kept_neighbours(
    index: VectorIndex,
    router: Router,
    queries: np.ndarray,
    neighbours: np.ndarray,
    nprobe: int,
    rerank: int | None = None,
) -> np.ndarray:
    """(n, k) whether the coded search of raw ``queries`` through ``router`` at ``nprobe``
    returns each exact neighbour; ``index`` holds the documents under their row numbers
    (the ids ``neighbours`` holds). With exact re-ranking, a neighbour among the candidates
    is returned, so this is what the codes keep."""
    k = neighbours.shape[1]
    found = index.search(queries, k, nprobe=nprobe, router=router, rerank=rerank).ids
    return (neighbours[:, :, None] == found[:, None, :]).any(axis=2) & (neighbours >= 0)


def kept_by_nprobe(
    index: VectorIndex, router: Router, queries: np.ndarray, neighbours: np.ndarray
) -> list[tuple[int, np.ndarray]]:
    """``kept_neighbours`` at each nprobe a table of code lists is measured at
    (``measured_nprobes`` up to ``coded_reach``): what ``measure`` takes as ``kept``."""
    reach = coded_reach(router.nlist, index.count, len(queries))
    return [
        (p, kept_neighbours(index, router, queries, neighbours, p))
        for p in measured_nprobes(router.nlist, reach)
    ]


def measured_nprobes(nlist: int, most: int | None = None) -> list[int]:
    """1, 2, 4, ... and ``most`` (default ``nlist``): where the coded search is run for a
    table, and what ``RecallTable.summary`` shows."""
    top = nlist if most is None else min(most, nlist)
    return sorted({2**i for i in range(top.bit_length()) if 2**i <= top} | {top})


def coded_reach(nlist: int, n_docs: int, n_queries: int) -> int:
    """The most lists a measurement of code lists probes: ``CODED_SCORES`` codes scored
    per pass (every list of a large collection would take minutes; a target no measured
    nprobe reaches is kept by exact search)."""
    per_list = max(1, n_docs * n_queries // max(1, nlist))
    return max(1, min(nlist, CODED_SCORES // per_list))


def measure(
    router: Router,
    queries: np.ndarray,
    neighbour_lists: np.ndarray,
    *,
    k: int = 10,
    z: float = LOWER_BOUND_Z,
    routing: str = "centroid",
    router_version: int | None = None,
    kept: list[tuple[int, np.ndarray]] | None = None,
    codes: dict[str, Any] | None = None,
    adaptive: dict[str, Any] | None = None,
) -> RecallTable:
    """Recall@k of ``router`` at every nprobe on prepared held-out ``queries``.

    ``neighbour_lists`` (n, >=k) holds the list of each query's exact top-k (see
    ``labels.list_labels``); IVF-Flat finds a neighbour iff its list is probed, so recall
    follows from the lists' ranks without searching. Code lists: ``kept`` holds, for
    ascending nprobes (``measured_nprobes``), the (n, k) neighbours the coded search keeps
    there (``kept_neighbours``); each nprobe counts those kept at the next measured one, and
    nprobes beyond the last measured one repeat its value, so ``nprobe_for`` never picks
    them (a target that one does not reach is kept by exact search). ``adaptive``: the
    router's calibration measured on the same queries, carried with the table.
    """
    ranks = neighbour_ranks(router, queries, neighbour_lists)[:, :k]
    n = ranks.shape[0]
    if n == 0:
        raise ValueError("a recall table needs at least one query")
    if kept is None:
        found = _found(ranks, router.nlist, k)
    else:
        found = np.empty((n, router.nlist), dtype=np.float64)
        start = 0
        for nprobe, kept_there in kept:
            lost = np.where(kept_there[:, :k], ranks, router.nlist)
            found[:, start:nprobe] = _found(lost, router.nlist, k)[:, start:nprobe]
            start = nprobe
        # Beyond the last measured nprobe, its value: never a smaller nprobe's promise.
        found[:, start:] = found[:, start - 1 : start]
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
        codes=codes,
        adaptive=adaptive,
    )


def _found(ranks: np.ndarray, nlist: int, k: int) -> np.ndarray:
    """(n, nlist): the share of each query's top-k found at nprobe 1 .. nlist."""
    n = ranks.shape[0]
    # found[i, p-1]: share of query i's top-k found with p probes.
    first_probe = np.minimum(ranks, nlist)  # rank r is found from nprobe r + 1 on
    counts = np.zeros((n, nlist + 1), dtype=np.float64)
    np.add.at(counts, (np.arange(n)[:, None], first_probe), 1.0)
    return np.cumsum(counts, axis=1)[:, :nlist] / k
