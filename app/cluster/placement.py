"""Placement: which shard holds each IVF list, so that a query touches few shards.

A query probes a handful of lists; the shards holding them are the shards it costs (a
request, a wait for the slowest). Lists probed together by the logged queries should sit
together: that is a balanced partition of the co-probe hypergraph (a list is a vertex, a
query the hyperedge of its probed lists), minimising the shards each query touches (the
connectivity objective of hypergraph partitioners), under two balance constraints, both
at most ``(1 + imbalance)`` times the mean per shard:

- points: the memory a shard needs;
- probe load: the vectors it scans for the logged queries (probes of a list times its size).

Reimplemented from the textbook scheme (greedy growing, then Fiduccia-Mattheyses-style
single-vertex moves with exact connectivity gains), without a partitioning library.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.cluster.merge import shards_touched

DEFAULT_IMBALANCE = 0.1
REFINE_PASSES = 8


@dataclass(frozen=True, eq=False)
class Placement:
    """``shard_of[list]``: the shard of each list of one clustering; ``epoch`` orders the
    placements of a collection (a new one is built aside, then switched to)."""

    shard_of: np.ndarray  # (nlist,) int64 in [0, shards)
    shards: int
    epoch: int = 0
    method: str = "contiguous"

    def __post_init__(self) -> None:
        shard_of = np.ascontiguousarray(self.shard_of, dtype=np.int64).reshape(-1)
        if self.shards < 1 or (
            shard_of.size and (shard_of.min() < 0 or shard_of.max() >= self.shards)
        ):
            raise ValueError(f"shard numbers must be in [0, {self.shards})")
        object.__setattr__(self, "shard_of", shard_of)

    @property
    def nlist(self) -> int:
        return int(self.shard_of.shape[0])

    def lists_of(self, shard: int) -> np.ndarray:
        return np.flatnonzero(self.shard_of == shard)

    def touched(self, probes: np.ndarray) -> np.ndarray:
        """Per query, the distinct shards its probe lists (-1 padded) fall in."""
        return shards_touched(probes, self.shard_of)


def contiguous_placement(nlist: int, shards: int) -> Placement:
    """Lists 0..nlist-1 cut into ``shards`` runs of near-equal length (list order is the
    clustering's, unrelated to what is probed together: a baseline)."""
    _check(nlist, shards)
    return Placement(np.arange(nlist) * shards // nlist, shards, method="contiguous")


def random_placement(nlist: int, shards: int, seed: int = 0) -> Placement:
    """A random permutation of the contiguous cut: equal list counts, random membership."""
    _check(nlist, shards)
    order = np.random.default_rng(seed).permutation(nlist)
    shard_of = np.empty(nlist, np.int64)
    shard_of[order] = np.arange(nlist) * shards // nlist
    return Placement(shard_of, shards, method="random")


def probe_load(probes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Vectors scanned per list for ``probes`` (n, w): times probed x points in the list."""
    flat = np.asarray(probes, np.int64).reshape(-1)
    counts = np.bincount(flat[flat >= 0], minlength=len(sizes))
    return counts * np.asarray(sizes, np.int64)


def coprobe_placement(
    probes: np.ndarray,
    sizes: np.ndarray,
    shards: int,
    *,
    imbalance: float = DEFAULT_IMBALANCE,
    seed: int = 0,
    passes: int = REFINE_PASSES,
) -> Placement:
    """Lists placed so that the logged ``probes`` (n, w; -1 padded) touch few shards.

    ``sizes``: points per list. Both the points and the probe load of every shard stay
    within ``(1 + imbalance)`` of the mean where the lists allow it (one list larger than a
    shard's share necessarily exceeds it).
    """
    sizes = np.asarray(sizes, np.int64)
    nlist = len(sizes)
    _check(nlist, shards)
    if shards == 1:
        return Placement(np.zeros(nlist, np.int64), 1, method="coprobe")
    graph = _Hypergraph(np.asarray(probes, np.int64), nlist)
    weights = np.stack([sizes, probe_load(probes, sizes)]).astype(np.float64)  # (2, nlist)
    caps = (1.0 + imbalance) * weights.sum(axis=1) / shards
    caps = np.maximum(caps, 1.0)
    rng = np.random.default_rng(seed)
    state = _State(graph, weights, caps, shards)
    state.grow(rng)
    for _ in range(passes):
        if not state.refine(rng):
            break
    return Placement(state.shard_of.copy(), shards, method="coprobe")


class _Hypergraph:
    """The queries probing each list (CSR over lists), and each query's list count."""

    def __init__(self, probes: np.ndarray, nlist: int) -> None:
        n, w = probes.shape if probes.ndim == 2 else (0, 0)
        rows = np.repeat(np.arange(n, dtype=np.int64), w)
        flat = probes.reshape(-1)
        valid = flat >= 0
        rows, flat = rows[valid], flat[valid]
        order = np.argsort(flat, kind="stable")
        self.queries = rows[order]
        self.starts = np.searchsorted(flat[order], np.arange(nlist + 1))
        self.n_queries = n

    def of(self, list_no: int) -> np.ndarray:
        return self.queries[self.starts[list_no] : self.starts[list_no + 1]]


class _State:
    """A partition being built: each query's lists per shard (``pins``) give exact gains."""

    def __init__(
        self, graph: _Hypergraph, weights: np.ndarray, caps: np.ndarray, shards: int
    ) -> None:
        self.graph = graph
        self.weights = weights
        self.caps = caps
        self.shards = shards
        nlist = weights.shape[1]
        self.shard_of = np.full(nlist, -1, np.int64)
        self.fill = np.zeros((2, shards))
        self.pins = np.zeros((graph.n_queries, shards), np.int32)

    def _place(self, list_no: int, shard: int) -> None:
        old = self.shard_of[list_no]
        qs = self.graph.of(list_no)
        if old >= 0:
            self.fill[:, old] -= self.weights[:, list_no]
            np.subtract.at(self.pins[:, old], qs, 1)
        self.shard_of[list_no] = shard
        self.fill[:, shard] += self.weights[:, list_no]
        np.add.at(self.pins[:, shard], qs, 1)

    def _fits(self, list_no: int) -> np.ndarray:
        """Shards that can take the list within both caps."""
        after = self.fill + self.weights[:, list_no : list_no + 1]
        return np.all(after <= self.caps[:, None] + 1e-9, axis=0)

    def grow(self, rng: np.random.Generator) -> None:
        """Greedy growing: heaviest lists first, each to the fitting shard its queries
        already touch most (ties and empty shards: the least filled)."""
        order = np.argsort(-(self.weights / self.caps[:, None]).max(axis=0), kind="stable")
        for list_no in order.tolist():
            qs = self.graph.of(list_no)
            affinity = (self.pins[qs] > 0).sum(axis=0).astype(np.float64)
            relative = (self.fill / self.caps[:, None]).max(axis=0)
            fits = self._fits(list_no)
            if not fits.any():  # larger than any shard's slack: the least filled takes it
                self._place(list_no, int(np.argmin(relative)))
                continue
            score = np.where(fits, affinity - 1e-3 * relative, -np.inf)
            self._place(list_no, int(np.argmax(score)))

    def refine(self, rng: np.random.Generator) -> bool:
        """One pass of single-list moves, each lowering the total shards touched; whether
        any list moved."""
        moved = False
        for list_no in rng.permutation(len(self.shard_of)).tolist():
            qs = self.graph.of(list_no)
            if not len(qs):
                continue
            here = int(self.shard_of[list_no])
            pins = self.pins[qs]
            leaves = int(np.count_nonzero(pins[:, here] == 1))  # queries that stop touching here
            joins = np.count_nonzero(pins == 0, axis=0)  # queries that start touching there
            gain = leaves - joins.astype(np.int64)
            gain[here] = 0
            fits = self._fits(list_no)
            fits[here] = False
            gain = np.where(fits, gain, 0)
            best = int(np.argmax(gain))
            if gain[best] > 0:
                self._place(list_no, best)
                moved = True
        return moved


def _check(nlist: int, shards: int) -> None:
    if shards < 1:
        raise ValueError("shards must be at least 1")
    if nlist < shards:
        raise ValueError(f"{shards} shards need at least as many lists, got {nlist}")
