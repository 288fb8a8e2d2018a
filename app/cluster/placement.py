"""Placement: which shard holds each IVF list, so that a query touches few shards.

A query probes a handful of lists; the shards holding them are the shards it costs (a
request, a wait for the slowest). Lists probed together by the logged queries should sit
together: that is a balanced partition of the co-probe hypergraph (a list is a vertex, a
query the hyperedge of its probed lists), minimising the shards each query touches (the
connectivity objective of hypergraph partitioners), under two balance constraints, both
at most ``(1 + imbalance)`` times the mean per shard:

- points: the memory a shard needs;
- probe load: the vectors it scans for the logged queries (probes of a list times its size).

Reimplemented from the textbook scheme, without a partitioning library: greedy graph
growing on the co-probe graph (edge weight: queries probing both lists) grows one shard
at a time from a list on the frontier of those placed, taking the list most co-probed with
the shard so far until it holds its share; then a repair pass moves lists out of any shard
beyond the bounds, and Fiduccia-Mattheyses-style passes move single lists wherever that
lowers the total shards touched (exact gains from each query's lists per shard).

The co-probe matrix is dense (nlist x nlist float32): 4 MB at 1,000 lists, 1 GB at 16,000.
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
    state = _State(graph, weights, caps, shards, imbalance)
    state.grow(_coprobe_matrix(probes, nlist))
    state.repair()
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
        self,
        graph: _Hypergraph,
        weights: np.ndarray,
        caps: np.ndarray,
        shards: int,
        imbalance: float = DEFAULT_IMBALANCE,
    ) -> None:
        self.graph = graph
        self.imbalance = imbalance
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

    def grow(self, coprobed: np.ndarray) -> None:
        """Greedy graph growing: shard after shard, from a seed on the frontier of the lists
        placed so far (the first: the least co-probed list), add the list most co-probed
        with the shard among those that keep it within both bounds, until it holds its
        share of points and load together; the last shard takes the rest.

        Popular lists carry much load for few points: grown by affinity alone, the first
        shards would fill their load with few points and leave the last one most of the
        points. So a list is a candidate only while the shard's shares of points and of
        load stay within ``imbalance / shards`` of each other (or move closer): every shard,
        the last included, then holds about as much of one as of the other."""
        nlist = len(self.shard_of)
        total = self.weights.sum(axis=1)
        normalised = self.weights / total[:, None]
        share = float(len(total)) / self.shards  # of the normalised weights, summed
        tolerance = self.imbalance / self.shards
        free = np.ones(nlist, dtype=bool)
        to_placed = np.zeros(nlist, dtype=np.float64)
        for shard in range(self.shards - 1):
            if not free.any():
                break
            if shard == 0:
                seed = int(np.argmin(np.where(free, coprobed.sum(axis=1), np.inf)))
            else:
                seed = int(np.argmax(np.where(free, to_placed, -np.inf)))
            affinity = np.zeros(nlist, dtype=np.float64)
            list_no = seed
            while True:
                self._place(list_no, shard)
                free[list_no] = False
                affinity += coprobed[list_no]
                to_placed += coprobed[list_no]
                if (self.fill[:, shard] / total).sum() >= share:
                    break
                room = self.caps - self.fill[:, shard]
                fits = free & np.all(self.weights <= room[:, None] + 1e-9, axis=0)
                gap = self.fill[0, shard] / total[0] - self.fill[1, shard] / total[1]
                gap_after = np.abs(gap + normalised[0] - normalised[1])
                fits &= (gap_after <= tolerance) | (gap_after < abs(gap))
                if not fits.any():
                    break
                list_no = int(np.argmax(np.where(fits, affinity, -np.inf)))
        for list_no in np.flatnonzero(free).tolist():
            self._place(list_no, self.shards - 1)

    def repair(self) -> None:
        """Move lists out of shards beyond a bound, each time the move that costs the
        fewest extra shards touched, to a shard it fits in (if any does)."""
        for _ in range(len(self.shard_of)):
            over = np.flatnonzero(np.any(self.fill > self.caps[:, None] + 1e-9, axis=0))
            if not len(over):
                return
            best: tuple[float, int, int] | None = None
            for list_no in np.flatnonzero(np.isin(self.shard_of, over)).tolist():
                gains = self._gains(list_no)
                fits = self._fits(list_no)
                fits[self.shard_of[list_no]] = False
                if fits.any():
                    target = int(np.argmax(np.where(fits, gains, -np.inf)))
                    if best is None or gains[target] > best[0]:
                        best = (float(gains[target]), list_no, target)
            if best is None:
                return  # nothing fits anywhere: the lists are too coarse for the bounds
            self._place(best[1], best[2])

    def _gains(self, list_no: int) -> np.ndarray:
        """Per shard, how many fewer shards the queries touch if the list moves there."""
        qs = self.graph.of(list_no)
        here = int(self.shard_of[list_no])
        pins = self.pins[qs]
        leaves = int(np.count_nonzero(pins[:, here] == 1))
        gains = leaves - np.count_nonzero(pins == 0, axis=0).astype(np.float64)
        gains[here] = 0.0
        return gains

    def refine(self, rng: np.random.Generator) -> bool:
        """One pass of single-list moves, each lowering the total shards touched; whether
        any list moved."""
        moved = False
        for list_no in rng.permutation(len(self.shard_of)).tolist():
            if not len(self.graph.of(list_no)):
                continue
            gain = self._gains(list_no)
            fits = self._fits(list_no)
            fits[self.shard_of[list_no]] = False
            gain = np.where(fits, gain, 0)
            best = int(np.argmax(gain))
            if gain[best] > 0:
                self._place(list_no, best)
                moved = True
        return moved


def _coprobe_matrix(probes: np.ndarray, nlist: int, block: int = 8192) -> np.ndarray:
    """(nlist, nlist): how many queries probe both lists (the diagonal: each list's probes)."""
    out = np.zeros((nlist, nlist), dtype=np.float32)
    for start in range(0, len(probes), block):
        part = probes[start : start + block]
        incidence = np.zeros((len(part), nlist + 1), dtype=np.float32)
        np.put_along_axis(incidence, np.where(part >= 0, part, nlist), 1.0, axis=1)
        hit = incidence[:, :nlist]
        out += hit.T @ hit
    return out


def _check(nlist: int, shards: int) -> None:
    if shards < 1:
        raise ValueError("shards must be at least 1")
    if nlist < shards:
        raise ValueError(f"{shards} shards need at least as many lists, got {nlist}")
