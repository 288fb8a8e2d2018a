"""The in-memory ANN index: one faiss ``IndexIVFFlat`` whose lists we fill and probe ourselves.

Placement and routing are ours, scanning is faiss's:

- a vector goes to the list chosen by ``Clustering.assign`` (the rule stored with the
  clustering), added with ``add_preassigned``; faiss's quantizer inside the IVF only holds
  the representatives (for snapshots and inspection) and never routes;
- a query is routed by a ``Router`` (centroid or learned) into probe lists, then scanned with
  ``search_preassigned``: only the routing differs between routers;
- before a clustering exists the index has one list, and exact search probes every list, so
  exact and approximate search share one code path.

Each vector is held once, in the IVF lists. A faiss ``Hashtable`` direct map (id -> list,
offset) makes removal and replacement O(1) per id.

Concurrency (which lock guards what):

- ``_rw`` (reader-writer): the *contents* of the current IVF's lists. Searches and list
  reads share it; adds and removals hold it exclusively, at most ``WRITE_CHUNK`` vectors
  at a time, so a search never waits behind a large write for long.
- ``_mutate`` (mutex): serialises writers (upsert, remove, set_clustering, copy).
  Whoever holds it knows nobody else changes the index, so it may read the lists without
  ``_rw`` (searches only read) and compute assignments outside the exclusive section.
- ``_state`` (ivf, clustering, default router) is replaced as a whole, under ``_rw``
  exclusive, and read by a single attribute load. An IVF swapped out is never written
  again, so a search that picked it up before the swap still finishes consistently.
- ``generation`` counts the exclusive sections: equal before and after a copy (``subset``),
  no write landed in between.

faiss releases the GIL during search (SWIG ``-threads``), so searches from several Python
threads run in parallel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from app.engine.clustering import Clustering
from app.engine.locks import RWLock
from app.engine.metric import Metric, faiss_metric, prepare, to_scores
from app.engine.routing import Router, centroid_router

# Largest write held in one exclusive section: ~3 MB of 384-d vectors, a few milliseconds.
WRITE_CHUNK = 2000
# Probes when the caller names none: a recall-oriented middle ground for ~4 sqrt(n) lists.
DEFAULT_NPROBE = 8
# libstdc++ unordered_map<int64, int64>: a 32-byte node plus about one 8-byte bucket per entry.
HASHTABLE_BYTES_PER_ENTRY = 40
_HASHTABLE: int = faiss.DirectMap.Hashtable  # type: ignore[attr-defined]  # missing from stubs


class RouterMismatchError(ValueError):
    """The router was trained for another clustering than the one the index holds."""


@dataclass(frozen=True)
class SearchResult:
    scores: np.ndarray  # (n, k) float32, higher is better, best first; padding -inf
    ids: np.ndarray  # (n, k) int64 internal ids, padding -1
    nprobe: float  # lists probed per query (mean); nlist for exact search
    scanned: float = 0.0  # vectors scored per query in the probed lists (mean)


@dataclass(frozen=True)
class _State:
    ivf: faiss.IndexIVFFlat
    clustering: Clustering | None
    router: Router | None  # the default centroid router of ``clustering``


class VectorIndex:
    """Vectors by int64 id in IVF lists; searched by any router of the current clustering."""

    def __init__(self, dim: int, metric: Metric, clustering: Clustering | None = None) -> None:
        if dim < 1:
            raise ValueError("dim must be positive")
        self.dim = int(dim)
        self.metric = Metric(metric)
        self._check_clustering(clustering)
        self._rw = RWLock()
        self._mutate = threading.Lock()
        # set_clustering: one at a time, and the ids written while it builds (under _mutate).
        self._rebuilding = threading.Lock()
        self._touched: set[int] | None = None
        self.generation = 0  # bumped in every exclusive section (under ``_rw`` write)
        self._state = _State(
            _new_ivf(self.dim, self.metric, clustering), clustering, _default_router(clustering)
        )

    @classmethod
    def from_faiss(
        cls, dim: int, metric: Metric, ivf: faiss.IndexIVFFlat, clustering: Clustering | None
    ) -> VectorIndex:
        """Adopt a filled IVF (e.g. read from a snapshot) built by an index of this class."""
        index = cls(dim, metric, clustering)
        expected = clustering.nlist if clustering is not None else 1
        if ivf.d != index.dim or ivf.nlist != expected:
            raise ValueError("the IVF does not match the dimension or the clustering")
        if ivf.metric_type != faiss_metric(index.metric):
            raise ValueError("the IVF does not match the metric")
        if ivf.direct_map.type != _HASHTABLE:
            raise ValueError("the IVF needs a hashtable direct map")
        _parallel_over_queries(ivf)
        index._state = _State(ivf, clustering, index._state.router)
        return index

    # -- reading ----------------------------------------------------------------------------

    @property
    def clustering(self) -> Clustering | None:
        return self._state.clustering

    @property
    def count(self) -> int:
        return int(self._state.ivf.ntotal)

    def __len__(self) -> int:
        return self.count

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, int | np.integer) or id < 0:
            return False
        with self._rw.read():
            try:
                self._state.ivf.direct_map.get(int(id))
            except RuntimeError:  # faiss's hashtable lookup throws on a missing key
                return False
        return True

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, stored vectors) of those of ``ids`` held now, in order: for re-scoring
        candidates another model proposed; an id removed meanwhile is simply absent."""
        found: list[int] = []
        rows: list[np.ndarray] = []
        ivf = self._state.ivf
        with self._rw.read():
            for i in np.asarray(ids, dtype=np.int64).tolist():
                try:
                    rows.append(np.asarray(ivf.reconstruct(i), dtype=np.float32))
                except RuntimeError:  # faiss's hashtable lookup throws on a missing key
                    continue
                found.append(i)
        if not rows:
            return np.empty(0, np.int64), np.empty((0, self.dim), np.float32)
        return np.asarray(found, np.int64), np.vstack(rows).astype(np.float32, copy=False)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        nprobe: int | None = None,
        router: Router | None = None,
        exact: bool = False,
        lists: np.ndarray | None = None,
        selector: faiss.IDSelector | None = None,
    ) -> SearchResult:
        """Top-``k`` ids of raw ``queries``, best first.

        Probe lists come, in order of precedence, from ``exact`` (all lists), ``lists``
        (preassigned, -1 padded, e.g. adaptive routing; ``router``, if given, is the one that
        chose them), or ``router`` (default: the clustering's centroid router) with
        ``nprobe`` lists. ``selector`` filters ids during
        the scan, so a filtered search still returns ``k`` results when enough pass.
        """
        if k < 1:
            raise ValueError("k must be at least 1")
        q = prepare(queries, self.metric, self.dim)
        state = self._state
        nlist = state.ivf.nlist
        if exact or state.clustering is None:
            probe = np.broadcast_to(np.arange(nlist, dtype=np.int64), (q.shape[0], nlist))
        elif lists is not None:
            if router is not None:  # the router that chose them must fit this clustering
                _check_router(router, state.clustering)
            probe = _check_lists(lists, q.shape[0], nlist)
        else:
            chosen = router if router is not None else state.router
            assert chosen is not None and state.clustering is not None
            _check_router(chosen, state.clustering)
            wanted = DEFAULT_NPROBE if nprobe is None else nprobe
            probe = chosen.route(q, min(wanted, nlist))
        probe = np.ascontiguousarray(probe, dtype=np.int64)
        with self._rw.read():
            distances, ids, scored = _scan(state.ivf, q, k, probe, selector)
        scores = to_scores(distances, self.metric)
        scores[ids < 0] = -np.inf
        n = q.shape[0]
        probes = np.count_nonzero(probe >= 0) / n if n else 0.0
        return SearchResult(
            scores.astype(np.float32, copy=False), ids, probes, scored / n if n else 0.0
        )

    def list_sizes(self) -> np.ndarray:
        ivf = self._state.ivf
        with self._rw.read():
            invlists: Any = ivf.invlists
            return np.array([invlists.list_size(i) for i in range(ivf.nlist)], np.int64)

    def memory_bytes(self) -> int:
        """Estimated payload: vectors and ids in the lists, the id hashtable, representatives.

        Excludes the lists' spare vector capacity (allocator slack); bench/engine.py compares
        this estimate with the process's measured growth.
        """
        ivf = self._state.ivf
        per_vector = ivf.code_size + 8 + HASHTABLE_BYTES_PER_ENTRY
        return int(ivf.ntotal) * per_vector + ivf.nlist * self.dim * 4

    def copy(self) -> tuple[faiss.Index, Clustering | None]:
        """A copy of the IVF and its clustering as they are now, e.g. for a snapshot.

        Writers are held off only while the lists are copied (memory speed), not while the
        caller serialises the copy; searches go on throughout.
        """
        with self._mutate:
            state = self._state
            # No read lock: holding _mutate, nobody writes the lists; searches only read.
            return faiss.clone_index(state.ivf), state.clustering

    # -- writing ----------------------------------------------------------------------------

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add raw ``vectors`` under ``ids``; an id already held (or repeated) is replaced."""
        ids = _as_ids(ids)
        x = prepare(vectors, self.metric, self.dim)
        if x.shape[0] != ids.shape[0]:
            raise ValueError("ids and vectors must have the same length")
        ids, x = _last_occurrence(ids, x)
        if not len(ids):
            return
        with self._mutate:
            self._note_written(ids)
            state = self._state
            if state.ivf.ntotal == 0:
                # First load: build aside with exact list capacities, swap in at once.
                new = _new_ivf(self.dim, self.metric, state.clustering, hashtable=False)
                _fill_exact(new, lambda: iter([(ids, x)]), state.clustering)
                with self._rw.write():
                    self._state = _State(new, state.clustering, state.router)
                    self.generation += 1
                return
            assign = _assign(state.clustering, x)
            for start in range(0, len(ids), WRITE_CHUNK):
                chunk = slice(start, start + WRITE_CHUNK)
                chunk_ids = np.ascontiguousarray(ids[chunk])
                chunk_x = np.ascontiguousarray(x[chunk])
                chunk_assign = np.ascontiguousarray(assign[chunk])
                with self._rw.write():
                    # Remove and re-add in one section: no search sees the id missing.
                    _remove(state.ivf, chunk_ids)
                    _add(state.ivf, chunk_x, chunk_assign, chunk_ids)
                    self.generation += 1

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were present (absent ids are ignored)."""
        ids = np.unique(_as_ids(ids))
        removed = 0
        with self._mutate:
            self._note_written(ids)
            ivf = self._state.ivf
            for start in range(0, len(ids), WRITE_CHUNK):
                chunk_ids = np.ascontiguousarray(ids[start : start + WRITE_CHUNK])
                with self._rw.write():
                    removed += _remove(ivf, chunk_ids)
                    self.generation += 1
        return removed

    def set_clustering(self, clustering: Clustering | None) -> None:
        """Re-assign every held vector to the lists of ``clustering`` (None: one list).

        The new IVF is built aside while searches *and writes* go on: the lists are copied
        one at a time under the read lock, the ids written meanwhile are noted, and only the
        last step holds writers off: it carries those ids over from the current lists and
        swaps the new IVF in (milliseconds, however large the index).
        """
        self._check_clustering(clustering)
        with self._rebuilding:
            with self._mutate:
                self._touched = set()
            try:
                source = self._state.ivf
                blocks = []
                for list_no in range(source.nlist):
                    with self._rw.read():
                        blocks.append(_read_list(source, list_no))
                with self._mutate:
                    # An id written during the copy may have been read twice or not at all:
                    # it is left out here, and the carry-over reads its current vector.
                    moved = np.fromiter(self._touched, np.int64, len(self._touched))
                if moved.size:
                    blocks = [_without(block, moved) for block in blocks]
                new = _new_ivf(self.dim, self.metric, clustering, hashtable=False)
                _fill_exact(new, lambda: iter(blocks), clustering)
                blocks.clear()
                with self._mutate:
                    _carry_over(self._state.ivf, new, clustering, self._touched)
                    state = _State(new, clustering, _default_router(clustering))
                    with self._rw.write():
                        self._state = state
                        self.generation += 1
                    self._touched = None
            finally:
                if self._touched is not None:  # the build failed: stop noting writes
                    with self._mutate:
                        self._touched = None

    def subset(self, allowed: np.ndarray, generation: int) -> VectorIndex | None:
        """A copy of the vectors whose ids ``allowed`` lets through, in the same lists.

        ``allowed`` is a little-endian bitmap over ids (an ``AllowedIds.bits``). Searching
        the copy reads only those vectors, where a selector on this index reads them all
        (a memory-bound scan skips distances, not memory). The lists are copied one at a
        time under the read lock, so writers are not held off; the copy is returned only
        if this index was at ``generation`` throughout (else None: a write landed).
        """
        # One bool per id the bitmap covers, then False for every id beyond it.
        passes = np.append(np.unpackbits(allowed, bitorder="little").view(bool), False)
        state = self._state
        ivf = state.ivf
        copy = _new_ivf(self.dim, self.metric, state.clustering, hashtable=False)
        invlists: Any = copy.invlists
        total = 0
        for list_no in range(ivf.nlist):
            with self._rw.read():
                if self.generation != generation:
                    return None
                ids, vecs = _read_list(ivf, list_no, passes)
            if len(ids):
                codes = faiss.swig_ptr(vecs.view(np.uint8))
                invlists.add_entries(list_no, len(ids), faiss.swig_ptr(ids), codes)
                total += len(ids)
        if self.generation != generation:
            return None
        copy.ntotal = total
        copy.set_direct_map_type(_HASHTABLE)
        return VectorIndex.from_faiss(self.dim, self.metric, copy, state.clustering)

    def _note_written(self, ids: np.ndarray) -> None:
        """Under ``_mutate``: while set_clustering builds, remember which ids changed."""
        if self._touched is not None:
            self._touched.update(ids.tolist())

    def _check_clustering(self, clustering: Clustering | None) -> None:
        if clustering is None:
            return
        if clustering.dim != self.dim:
            raise ValueError(f"clustering has dimension {clustering.dim}, index {self.dim}")
        if clustering.metric is not self.metric:
            raise ValueError(f"clustering is for {clustering.metric}, index is {self.metric}")


def scan_serially_on_this_thread() -> None:
    """Run this thread's searches on one OpenMP thread (other threads keep their setting).

    For a thread that only runs small searches, such as a server's event loop: waking
    OpenMP's sleeping team for one query costs more than splitting a small scan saves.
    """
    faiss.omp_set_num_threads(1)


def _new_ivf(
    dim: int, metric: Metric, clustering: Clustering | None, *, hashtable: bool = True
) -> faiss.IndexIVFFlat:
    """An empty, trained IVF whose quantizer holds the representatives (one zero list if none).

    ``hashtable=False`` leaves the id map to ``_fill_exact``, which builds it once at the end.
    """
    reps = clustering.representatives if clustering is not None else np.zeros((1, dim), np.float32)
    quantizer = faiss.IndexFlat(dim, faiss_metric(metric))
    quantizer.add(reps)
    # faiss's Python wrapper keeps ``quantizer`` alive as long as the IVF.
    ivf = faiss.IndexIVFFlat(quantizer, dim, reps.shape[0], faiss_metric(metric))
    if hashtable:
        ivf.set_direct_map_type(_HASHTABLE)
    _parallel_over_queries(ivf)
    return ivf


def _fill_exact(
    ivf: faiss.IndexIVFFlat,
    blocks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
    clustering: Clustering | None,
) -> None:
    """Bulk-fill an empty IVF (without id map) from ``blocks()`` of (ids, prepared vectors).

    faiss's ``add`` appends entry by entry, so each list's vector grows geometrically and
    ends up to twice its size (about +40% memory on average). Here every list is sized
    once to its final length, then written in place: two passes over ``blocks()`` (the
    first only assigns), never a second copy of the whole collection.
    """
    assigns = [_assign(clustering, vecs) for _, vecs in blocks()]
    total = sum(len(a) for a in assigns)
    invlists: Any = ivf.invlists
    if total:
        counts = np.bincount(np.concatenate(assigns), minlength=ivf.nlist)
        for list_no in np.flatnonzero(counts):
            invlists.resize(int(list_no), int(counts[list_no]))
    filled = np.zeros(ivf.nlist, dtype=np.int64)
    for (ids, vecs), assign in zip(blocks(), assigns, strict=True):
        if not len(assign):
            continue
        order = np.argsort(assign, kind="stable")
        lists, ids, vecs = assign[order], ids[order], vecs[order]
        targets, starts = np.unique(lists, return_index=True)
        ends = np.append(starts[1:], len(lists))
        for list_no, start, end in zip(
            targets.tolist(), starts.tolist(), ends.tolist(), strict=True
        ):
            invlists.update_entries(
                list_no,
                int(filled[list_no]),
                end - start,
                faiss.swig_ptr(ids[start:end]),
                faiss.swig_ptr(vecs[start:end].view(np.uint8)),
            )
            filled[list_no] += end - start
    ivf.ntotal = total
    ivf.set_direct_map_type(_HASHTABLE)  # built from the lists, sized once for ``total`` ids


def _parallel_over_queries(ivf: faiss.IndexIVFFlat) -> None:
    # faiss's default mode 0 parallelises in ``search`` around ``search_preassigned``, which
    # then runs single-threaded; mode 3 splits the queries of a preassigned search across
    # OpenMP threads. Not serialised, so set on every IVF we build or load.
    ivf.parallel_mode = 3


def _default_router(clustering: Clustering | None) -> Router | None:
    return centroid_router(clustering) if clustering is not None else None


def _assign(clustering: Clustering | None, x: np.ndarray) -> np.ndarray:
    if clustering is None:
        return np.zeros(x.shape[0], dtype=np.int64)
    return clustering.assign(x)


def _carry_over(
    current: faiss.IndexIVFFlat,
    new: faiss.IndexIVFFlat,
    clustering: Clustering | None,
    written: set[int],
) -> None:
    """Give ``new`` the current vector of every id in ``written`` (none if it was removed)."""
    if not written:
        return
    ids = np.fromiter(written, np.int64, len(written))
    _remove(new, ids)
    kept: list[int] = []
    vecs: list[np.ndarray] = []
    for pid in ids.tolist():
        try:
            vecs.append(np.asarray(current.reconstruct(pid)))
        except RuntimeError:  # faiss's hashtable lookup throws on a missing key: removed
            continue
        kept.append(pid)
    if kept:
        x = np.ascontiguousarray(np.vstack(vecs), dtype=np.float32)
        _add(new, x, _assign(clustering, x), np.array(kept, np.int64))


def _without(
    block: tuple[np.ndarray, np.ndarray], ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    keep = ~np.isin(block[0], ids)
    return block[0][keep], block[1][keep]


def _as_ids(ids: np.ndarray) -> np.ndarray:
    a = np.asarray(ids)
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise ValueError("ids must be a 1-d integer array")
    a = np.ascontiguousarray(a, dtype=np.int64)
    if a.size and a.min() < 0:
        raise ValueError("ids must be non-negative (-1 is padding)")
    return a


def _last_occurrence(ids: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop all but the last of repeated ids, as if the batch were applied in order."""
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    if len(first_in_reversed) == len(ids):
        return ids, x
    keep = np.sort(len(ids) - 1 - first_in_reversed)
    return ids[keep], x[keep]


def _check_lists(lists: np.ndarray, n: int, nlist: int) -> np.ndarray:
    a = np.asarray(lists)
    if a.ndim != 2 or a.shape[0] != n or a.shape[1] < 1:
        raise ValueError(f"lists must be (n={n}, nprobe), got shape {a.shape}")
    if a.size and (a.min() < -1 or a.max() >= nlist):
        raise ValueError(f"list numbers must be in [-1, {nlist})")
    return a


def _check_router(router: Router, clustering: Clustering) -> None:
    if router.nlist != clustering.nlist or router.dim != clustering.dim:
        raise RouterMismatchError("router shape does not match the clustering")
    if router.clustering_version != clustering.version:
        raise RouterMismatchError(
            f"router is for clustering version {router.clustering_version}, "
            f"index holds version {clustering.version}"
        )


def _scan(
    ivf: faiss.IndexIVFFlat,
    q: np.ndarray,
    k: int,
    probe: np.ndarray,
    selector: faiss.IDSelector | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """faiss's preassigned search: (distances, ids, vectors scored in the probed lists).

    Per-call parameters and statistics, so concurrent searches never share them.
    """
    n, width = probe.shape
    params = faiss.SearchParametersIVF()
    params.nprobe = width
    if selector is not None:
        params.sel = selector
    distances = np.empty((n, k), dtype=np.float32)
    ids = np.empty((n, k), dtype=np.int64)
    if n == 0:
        return distances, ids, 0
    stats = faiss.IndexIVFStats()
    coarse = np.zeros((n, width), dtype=np.float32)  # unused by a flat, non-residual IVF
    swig: Any = ivf  # faiss's stubs miss the SWIG-level C entry point
    swig.search_preassigned_c(
        n,
        faiss.swig_ptr(q),
        k,
        faiss.swig_ptr(probe),
        faiss.swig_ptr(coarse),
        faiss.swig_ptr(distances),
        faiss.swig_ptr(ids),
        False,
        params,
        stats,
    )
    return distances, ids, int(stats.ndis)


def _add(ivf: faiss.IndexIVFFlat, x: np.ndarray, assign: np.ndarray, ids: np.ndarray) -> None:
    ivf.add_core(len(ids), faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(assign))


def _remove(ivf: faiss.IndexIVFFlat, ids: np.ndarray) -> int:
    if len(ids) == 0:
        return 0
    # The hashtable direct map removes in O(1) per id, but only through an IDSelectorArray.
    return int(ivf.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))


def _read_list(
    ivf: faiss.IndexIVFFlat, list_no: int, passes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Copies of one list's ids and vectors; with ``passes`` (bools by id, the last one
    standing for every id beyond), of those whose id passes only, and only those are read."""
    invlists: Any = ivf.invlists  # faiss's stubs type it Optional and miss release_*
    size = invlists.list_size(list_no)
    if not size:
        return np.empty(0, np.int64), np.empty((0, ivf.d), np.float32)
    id_ptr = invlists.get_ids(list_no)
    code_ptr = invlists.get_codes(list_no)
    try:
        ids = faiss.rev_swig_ptr(id_ptr, size)  # views of faiss's memory, copied below
        codes = faiss.rev_swig_ptr(code_ptr, size * ivf.code_size)
        vecs = codes.view(np.float32).reshape(size, ivf.d)
        if passes is None:
            return ids.copy(), vecs.copy()
        keep = passes[np.minimum(ids, len(passes) - 1)]
        return ids[keep], vecs[keep]  # boolean indexing copies
    finally:
        invlists.release_ids(list_no, id_ptr)
        invlists.release_codes(list_no, code_ptr)
