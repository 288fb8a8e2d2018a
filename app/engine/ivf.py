"""The in-memory ANN index: one faiss IVF whose lists we fill and probe ourselves.

Placement and routing are ours, scanning is faiss's:

- a vector goes to the list chosen by ``Clustering.assign`` (the rule stored with the
  clustering), added with ``add_preassigned``; faiss's quantizer inside the IVF only holds
  the representatives (for snapshots and inspection) and never routes;
- a query is routed by a ``Router`` (centroid or learned) into probe lists, then scanned with
  ``search_preassigned``: only the routing differs between routers;
- before a clustering exists the index has one list, and exact search probes every list, so
  exact and approximate search share one code path.

With kind ``none`` each vector is held once, as float32 in an ``IndexIVFFlat``'s lists. A
compressed kind (``codes.py``: sq8, pq fast-scan, rabitq, and the catalyzer kinds, whose
lists live in the catalyzer's space: sign bits in a binary IVF, lattice points) holds codes in
the lists and the exact vectors beside them (``exact.py``): a search scans codes, then
re-scores its best
``rerank`` candidates exactly under the same read lock, so scores returned are always
exact; rebuilds, views and snapshots read the exact vectors (codes cannot be decoded). A
faiss ``Hashtable`` direct map (id -> list, offset) makes removal and replacement O(1) per
id; fast-scan lists have none (faiss does not offer it) and remove in one pass over the
lists, and only ids the exact vectors say are held.

Concurrency (which lock guards what):

- ``_rw`` (reader-writer): the *contents* of the current IVF's lists. Searches and list
  reads share it; adds and removals hold it exclusively, at most ``WRITE_CHUNK`` vectors
  at a time, so a search never waits behind a large write for long.
- ``_mutate`` (mutex): serialises writers (upsert, remove, set_clustering, copy).
  Whoever holds it knows nobody else changes the index, so it may read the lists without
  ``_rw`` (searches only read) and compute assignments outside the exclusive section.
- ``_state`` (ivf, clustering, default router, quantization, exact vectors) is replaced
  as a whole, under ``_rw`` exclusive, and read by a single attribute load. An IVF
  swapped out is never written again, so a search that picked it up before the swap still
  finishes consistently. (Exact vectors kept across a requantization are shared by the
  old and new state; both are written under ``_rw``.)
- ``generation`` counts the exclusive sections: equal before and after a copy (``subset``),
  no write landed in between.

faiss releases the GIL during search (SWIG ``-threads``), so searches from several Python
threads run in parallel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from app.engine import lists as ivf_lists
from app.engine import rerank as reranking
from app.engine.clustering import Clustering
from app.engine.codes import (
    TRAIN_SAMPLE,
    CodeKind,
    Quantization,
    buildable,
    clone,
    code_metric,
    default_rerank,
    is_fast_scan,
    list_codes,
    query_codes,
    set_scan_modes,
    stored_code_ivf,
    train_code_ivf,
)
from app.engine.exact import ExactStorage, ExactVectors
from app.engine.locks import RWLock
from app.engine.metric import (
    Metric,
    as_matrix,
    faiss_metric,
    prepare,
    prepare_in_place,
    to_scores,
)
from app.engine.routing import Router, centroid_router

# Largest write held in one exclusive section: ~3 MB of 384-d vectors, a few milliseconds.
WRITE_CHUNK = 2000
# Probes when the caller names none: a recall-oriented middle ground for ~4 sqrt(n) lists.
DEFAULT_NPROBE = 8
# libstdc++ unordered_map<int64, int64>: a 32-byte node plus about one 8-byte bucket per entry.
HASHTABLE_BYTES_PER_ENTRY = 40

# (clustering version, the list of each vector under it): an assignment made already.
Assignment = tuple[int, np.ndarray]


class RouterMismatchError(ValueError):
    """The router was trained for another clustering than the one the index holds."""


@dataclass(frozen=True)
class SearchResult:
    scores: np.ndarray  # (n, k) float32, higher is better, best first; padding -inf
    ids: np.ndarray  # (n, k) int64 internal ids, padding -1
    nprobe: float  # lists probed per query (mean); nlist for exact search
    scanned: float = 0.0  # vectors scored per query in the probed lists (mean)
    candidates: float = 0.0  # candidates re-scored with exact vectors per query (mean)


@dataclass(frozen=True)
class _State:
    """Replaced as a whole: a search pairs lists and exact vectors of one moment."""

    ivf: Any  # IndexIVFFlat, or a code IVF (``coded``: an IndexIVF or a binary IndexBinaryIVF)
    clustering: Clustering | None
    router: Router | None  # the default centroid router of ``clustering``
    quantization: Quantization
    exact: ExactVectors | None  # the exact vectors of a compressed kind, else None

    @property
    def coded(self) -> bool:
        """The lists hold codes: scores are estimates, re-ranked with ``exact``."""
        return not isinstance(self.ivf, faiss.IndexIVFFlat)


class VectorIndex:
    """Vectors by int64 id in IVF lists; searched by any router of the current clustering.

    ``quantization``: what the lists hold once a clustering exists (``none``: float32; a
    compressed kind: codes, with exact vectors kept aside in ``exact_storage``). Before a
    clustering, or with too few points to train a codebook, the lists stay float32.
    """

    holds_vectors = True  # unlike ``RoutingIndex``, which a coordinator holds instead

    def __init__(
        self,
        dim: int,
        metric: Metric,
        clustering: Clustering | None = None,
        quantization: Quantization | None = None,
        exact_storage: ExactStorage = ExactStorage.FLOAT32,
        exact_dir: Path | None = None,
    ) -> None:
        if dim < 1:
            raise ValueError("dim must be positive")
        self.dim = int(dim)
        self.metric = Metric(metric)
        self._check_clustering(clustering)
        self.exact_storage = ExactStorage(exact_storage)
        self.exact_dir = exact_dir
        self._rw = RWLock()
        self._mutate = threading.Lock()
        # set_clustering: one at a time, and the ids written while it builds (under _mutate).
        self._rebuilding = threading.Lock()
        self._touched: set[int] | None = None
        self.generation = 0  # bumped in every exclusive section (under ``_rw`` write)
        q = quantization or Quantization()
        exact = self._new_exact() if q.compressed else None
        self._state = _State(
            ivf_lists.new_ivf(self.dim, self.metric, clustering),
            clustering,
            _default_router(clustering),
            q,
            exact,
        )
        if clustering is not None and buildable(q, 0, clustering):
            # A stored codebook fits, or a catalyzer: the lists hold codes from the start.
            self._state = self._build(clustering, q, exact, lambda: iter(()))

    @classmethod
    def from_faiss(
        cls,
        dim: int,
        metric: Metric,
        ivf: faiss.IndexIVF,
        clustering: Clustering | None,
        quantization: Quantization | None = None,
        exact: ExactVectors | None = None,
    ) -> VectorIndex:
        """Adopt a filled IVF (e.g. read from a snapshot) built by an index of this class,
        with the exact vectors of a compressed kind."""
        q = quantization or Quantization()
        index = cls(dim, metric, clustering)
        if exact is not None:  # writes and rebuilds keep the vectors where these are
            index.exact_storage, index.exact_dir = exact.storage, exact.directory
        expected = clustering.nlist if clustering is not None else 1
        if ivf.d != q.code_dim(index.dim) or ivf.nlist != expected:
            raise ValueError("the IVF does not match the dimension or the clustering")
        if code_metric(ivf) != code_metric_of(q, index.metric):
            raise ValueError("the IVF does not match the metric")
        if not is_fast_scan(ivf) and ivf.direct_map.type != ivf_lists.HASHTABLE:
            raise ValueError("the IVF needs a hashtable direct map")
        if q.compressed != (exact is not None):
            raise ValueError("exact vectors go with a compressed kind, and only with one")
        if exact is not None and len(exact) != ivf.ntotal:
            raise ValueError("the exact vectors do not match the lists")
        if not isinstance(ivf, faiss.IndexIVFFlat) and not q.compressed:
            raise ValueError("a code IVF needs a compressed kind")
        set_scan_modes(ivf)
        index._state = replace(index._state, ivf=ivf, quantization=q, exact=exact)
        return index

    # -- reading ----------------------------------------------------------------------------

    @property
    def clustering(self) -> Clustering | None:
        return self._state.clustering

    @property
    def quantization(self) -> Quantization:
        return self._state.quantization

    @property
    def coded(self) -> bool:
        return self._state.coded

    @property
    def count(self) -> int:
        return int(self._state.ivf.ntotal)

    def __len__(self) -> int:
        return self.count

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, int | np.integer) or id < 0:
            return False
        with self._rw.read():
            exact = self._state.exact
            if exact is not None:
                return bool(exact.contains(np.array([id], np.int64))[0])
            try:
                self._state.ivf.direct_map.get(int(id))
            except RuntimeError:  # faiss's hashtable lookup throws on a missing key
                return False
        return True

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, stored vectors) of those of ``ids`` held now, in order: for re-scoring
        candidates another model proposed; an id removed meanwhile is simply absent."""
        ids = np.asarray(ids, dtype=np.int64)
        found: list[int] = []
        rows: list[np.ndarray] = []
        with self._rw.read():
            state = self._state
            if state.exact is not None:  # code lists: the exact vectors are held beside them
                held = state.exact.rows_of(ids)
                keep = held >= 0
                return ids[keep], state.exact.take(held[keep])
            ivf = state.ivf
            for i in ids.tolist():
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
        rerank: int | None = None,
    ) -> SearchResult:
        """Top-``k`` ids of raw ``queries``, best first.

        Probe lists come, in order of precedence, from ``exact`` (all lists), ``lists``
        (preassigned, -1 padded, e.g. adaptive routing; ``router``, if given, is the one that
        chose them), or ``router`` (default: the clustering's centroid router) with
        ``nprobe`` lists. ``selector`` filters ids during
        the scan, so a filtered search still returns ``k`` results when enough pass.

        On code lists the best ``rerank`` candidates (default: the kind's) are re-scored with
        the exact vectors, so returned scores are always exact; ``exact`` re-scores every
        candidate of every list, which is exact search.
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
            self._check_fits(chosen, state.clustering)
            wanted = DEFAULT_NPROBE if nprobe is None else nprobe
            probe = chosen.route(q, min(wanted, nlist))
        probe = np.ascontiguousarray(probe, dtype=np.int64)
        n = q.shape[0]
        # Only preassigned lists may hold -1 (skipped probes); routed and exact ones never do.
        padded = lists is not None and not exact and state.clustering is not None
        if not n:
            probes = 0.0
        else:
            probes = np.count_nonzero(probe >= 0) / n if padded else float(probe.shape[1])
        if not state.coded:
            with self._rw.read():
                distances, ids, scored = ivf_lists.scan(state.ivf, q, k, probe, selector)
            scores = to_scores(distances, self.metric)
            scores[ids < 0] = -np.inf
            return SearchResult(
                scores.astype(np.float32, copy=False), ids, probes, scored / n if n else 0.0
            )
        width = (
            int(state.ivf.ntotal)
            if exact
            else (rerank or default_rerank(state.quantization, self.metric))
        )
        width = max(k, width, 1)
        coarse = reranking.centre_terms(state.ivf, state.clustering, q, probe, padded=padded)
        exact_vectors = state.exact
        assert exact_vectors is not None
        codes_q = query_codes(state.quantization, q)  # the catalyzer's pass: outside the lock
        with self._rw.read():
            _, candidates, scored = ivf_lists.scan(
                state.ivf, codes_q, width, probe, selector, coarse
            )
            if scored < 0:  # -1 probes read the trailing 0
                scored = int(self._list_sizes(state)[probe].sum())
            scores = exact_vectors.score(q, candidates, self.metric)
        top_scores, top_ids = reranking.best(scores, candidates, k)
        rescored = np.count_nonzero(candidates >= 0) / n if n else 0.0
        return SearchResult(top_scores, top_ids, probes, scored / n if n else 0.0, rescored)

    def lists_of(self, vectors: np.ndarray) -> Assignment | None:
        """(clustering version, the list of each raw vector under it), as ``upsert`` would
        place them now; None before a clustering. For the store's labels (shard replicas
        read by them), then for ``upsert``: one assignment serves both."""
        clustering = self._state.clustering
        if clustering is None:
            return None
        return clustering.version, clustering.assign(prepare(vectors, self.metric, self.dim))

    def _check_fits(self, router: Router, clustering: Clustering) -> None:
        """``_check_router``, skipped for the pair checked last (both are immutable): it
        runs on every search, and a learned router's check costs ~3 us of attribute reads."""
        fitted = self._fitted
        if fitted is not None and fitted[0] is router and fitted[1] is clustering:
            return
        _check_router(router, clustering)
        self._fitted = (router, clustering)

    _fitted: tuple[Router, Clustering] | None = None

    def list_sizes(self) -> np.ndarray:
        state = self._state
        with self._rw.read():
            return self._list_sizes(state)[:-1].copy()

    def _list_sizes(self, state: _State) -> np.ndarray:
        """Sizes of ``state``'s lists and a trailing 0 (so that a -1 probe indexes an empty
        list), kept per generation; the caller holds the read lock."""
        cached = self._sizes
        if cached is not None and cached[0] == self.generation and cached[1] is state.ivf:
            return cached[2]
        invlists: Any = state.ivf.invlists
        nlist = state.ivf.nlist
        sizes = np.array([invlists.list_size(i) for i in range(nlist)] + [0], np.int64)
        self._sizes = (self.generation, state.ivf, sizes)
        return sizes

    _sizes: tuple[int, faiss.IndexIVF, np.ndarray] | None = None

    def memory_bytes(self) -> int:
        """Estimated payload: codes (or vectors) and ids in the lists, the id map, the exact
        vectors held in memory, representatives.

        Fast-scan lists store codes in blocks of ``bbs``, so a list's last block counts
        whole. Excludes the lists' spare capacity (allocator slack); bench/engine.py and
        bench/compressed.py compare this estimate with the process's measured growth.
        """
        state = self._state
        ivf = state.ivf
        per_vector = 8 if is_fast_scan(ivf) else int(ivf.code_size) + 8
        if ivf.direct_map.type == ivf_lists.HASHTABLE:
            per_vector += HASHTABLE_BYTES_PER_ENTRY
        total = int(ivf.ntotal) * per_vector + ivf.nlist * self.dim * 4
        if is_fast_scan(ivf):
            bbs = int(ivf.bbs)  # type: ignore[attr-defined]
            with self._rw.read():
                blocks = int(((self._list_sizes(state) + bbs - 1) // bbs).sum())
            total += blocks * bbs * ivf.code_size
        if state.exact is not None:
            total += len(state.exact) * state.exact.bytes_per_vector()
        return total

    def bytes_per_vector(self) -> float:
        """Resident bytes per point (``memory_bytes`` without the representatives)."""
        count = self.count
        if not count:
            return 0.0
        return (self.memory_bytes() - self._state.ivf.nlist * self.dim * 4) / count

    def copy(self) -> tuple[faiss.Index, Clustering | None]:
        """A copy of the IVF and its clustering as they are now, e.g. for a snapshot.

        Writers are held off only while the lists are copied (memory speed), not while the
        caller serialises the copy; searches go on throughout.
        """
        ivf, clustering, _, _ = self.copy_all()
        return ivf, clustering

    def copy_all(
        self,
    ) -> tuple[faiss.Index, Clustering | None, Quantization, ExactVectors | None]:
        """``copy`` with the quantization and a copy of the exact vectors (same storage)."""
        with self._mutate:
            state = self._state
            # No read lock: holding _mutate, nobody writes the lists; searches only read.
            exact = state.exact.copy_of(state.exact.ids) if state.exact is not None else None
            return clone(state.ivf), state.clustering, state.quantization, exact

    # -- writing ----------------------------------------------------------------------------

    def upsert(
        self, ids: np.ndarray, vectors: np.ndarray, assigned: Assignment | None = None
    ) -> None:
        """Add raw ``vectors`` under ``ids``; an id already held (or repeated) is replaced.

        ``assigned``: (clustering version, each vector's list) by that clustering's rule,
        computed already: ``lists_of`` on the API's write path (the store's label, computed
        once), the store's labels in a shard replica (a point sits exactly where the label
        says, whatever the rounding of a recomputation). Used while the index holds that
        clustering; else (swapped meanwhile) the lists are assigned here.
        """
        self._upsert_prepared(_as_ids(ids), prepare(vectors, self.metric, self.dim), assigned)

    def load(self, ids: np.ndarray, vectors: np.ndarray, *, prepared: bool = False) -> None:
        """``upsert`` of a whole collection read into one (n, dim) float32 array that the
        caller gives up: normalised in place, and into an empty index each list is sized
        once. Loaded a block at a time, each list would grow geometrically instead, and the
        index would end up holding its vectors' size again in slack and freed blocks.

        ``prepared``: the vectors are prepared already (``prepare``), held as they are and
        only read, so the caller keeps them."""
        x = as_matrix(vectors, self.dim)
        if x is not vectors:
            raise ValueError("load takes a C-contiguous float32 (n, dim) array")
        if not prepared:
            prepare_in_place(x, self.metric)
        self._upsert_prepared(_as_ids(ids), x, None)

    def reserve(self, counts: np.ndarray) -> None:
        """Room for ``counts[list]`` entries in each empty list (lists holding entries are
        left as they are), and for ``counts.sum()`` more exact vectors, before an ``upsert``
        a block at a time of points whose lists are known (a shard replica's load): else
        each list grows geometrically, and the index ends up holding up to its size again
        in slack and outgrown blocks (``lists.reserve``)."""
        counts = np.asarray(counts, np.int64)
        with self._mutate:
            state = self._state
            if counts.shape != (state.ivf.nlist,) or (counts < 0).any():
                raise ValueError(f"counts must be {state.ivf.nlist} non-negative entry counts")
            with self._rw.write():  # a list moves while it is sized: no scan may read it
                ivf_lists.reserve(state.ivf, counts)
                if state.exact is not None:
                    state.exact.reserve(int(counts.sum()))

    def _upsert_prepared(self, ids: np.ndarray, x: np.ndarray, assigned: Assignment | None) -> None:
        if x.shape[0] != ids.shape[0]:
            raise ValueError("ids and vectors must have the same length")
        version, lists = assigned if assigned is not None else (None, None)
        if lists is not None:
            lists = _check_assignment(lists, len(ids))
        keep = _last_occurrence(ids)
        ids, x = ids[keep], x[keep]
        if lists is not None:
            lists = lists[keep]
        if not len(ids):
            return
        with self._mutate:
            self._note_written(ids)
            state = self._state
            if state.clustering is None or state.clustering.version != version:
                lists = None
            elif lists is not None and lists.size and lists.max() >= state.ivf.nlist:
                raise ValueError(f"list numbers must be in [0, {state.ivf.nlist})")
            if state.ivf.ntotal == 0 and lists is None:
                # First load: build aside with exact list capacities, swap in at once.
                exact = self._new_exact() if state.quantization.compressed else None
                if exact is not None:
                    exact.put(ids, x)
                new = self._build(
                    state.clustering, state.quantization, exact, lambda: iter([(ids, x)])
                )
                with self._rw.write():
                    self._state = new
                    self.generation += 1
                return
            assign = lists
            if assign is None and not is_fast_scan(state.ivf):
                assign = ivf_lists.assign_lists(state.clustering, x)
            for start in range(0, len(ids), WRITE_CHUNK):
                chunk = slice(start, start + WRITE_CHUNK)
                chunk_ids = np.ascontiguousarray(ids[chunk])
                chunk_x = np.ascontiguousarray(x[chunk])
                chunk_assign = np.ascontiguousarray(assign[chunk]) if assign is not None else None
                with self._rw.write():
                    # Remove and re-add in one section: no search sees the id missing.
                    _write(state, chunk_ids, chunk_x, chunk_assign)
                    self.generation += 1

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were present (absent ids are ignored)."""
        ids = np.unique(_as_ids(ids))
        removed = 0
        with self._mutate:
            self._note_written(ids)
            state = self._state
            for start in range(0, len(ids), WRITE_CHUNK):
                chunk_ids = np.ascontiguousarray(ids[start : start + WRITE_CHUNK])
                with self._rw.write():
                    removed += _erase(state, chunk_ids)
                    self.generation += 1
        return removed

    def set_clustering(
        self, clustering: Clustering | None, quantization: Quantization | None = None
    ) -> None:
        """Re-assign every held vector to the lists of ``clustering`` (None: one list);
        with ``quantization`` (e.g. its stored codebook for ``clustering``), code them so in
        the same rebuild.

        The new IVF is built aside while searches *and writes* go on: the lists (or the
        exact vectors of a compressed kind) are copied a block at a time under the read lock,
        the ids written meanwhile are noted, and only the last step holds writers off: it
        carries those ids over from the current index and swaps the new IVF in
        (milliseconds, however large the index).
        """
        self._check_clustering(clustering)
        self._rebuild(lambda state: (clustering, quantization or state.quantization))

    def set_quantization(self, quantization: Quantization) -> None:
        """Rebuild the lists with ``quantization``'s codes (codebooks trained anew), as
        ``set_clustering`` does: searches and writes go on, the swap is atomic; if building
        fails, the current index keeps serving and the error is raised."""
        self._rebuild(lambda state: (state.clustering, quantization))

    def _rebuild(self, target: Callable[[_State], tuple[Clustering | None, Quantization]]) -> None:
        with self._rebuilding:
            with self._mutate:
                self._touched = set()
                source = self._state
            clustering, quantization = target(source)
            try:
                blocks = self._read_all(source)
                with self._mutate:
                    # An id written during the copy may have been read twice or not at all:
                    # it is left out here, and the carry-over reads its current vector.
                    moved = np.fromiter(self._touched, np.int64, len(self._touched))
                if moved.size:
                    blocks = [_without(block, moved) for block in blocks]
                shared = source.exact if quantization.compressed else None
                exact = shared
                if quantization.compressed and exact is None:
                    exact = self._new_exact()
                    for ids, vecs in blocks:
                        exact.put(ids, vecs)
                new = self._build(clustering, quantization, exact, lambda: iter(blocks))
                blocks.clear()
                with self._mutate:
                    _carry_over(self._state, new, self._touched, shared_exact=shared is not None)
                    with self._rw.write():
                        self._state = new
                        self.generation += 1
                    self._touched = None
            finally:
                if self._touched is not None:  # the build failed: stop noting writes
                    with self._mutate:
                        self._touched = None

    def _read_all(self, state: _State) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every (ids, prepared vectors) of ``state``, a block at a time under the read lock."""
        blocks = []
        if state.exact is not None:
            with self._rw.read():
                ids = state.exact.ids.copy()
            for start in range(0, len(ids), WRITE_CHUNK):
                chunk = ids[start : start + WRITE_CHUNK]
                with self._rw.read():
                    rows = state.exact.rows_of(chunk)
                    held = rows >= 0  # removed meanwhile: noted, and left to the carry-over
                    blocks.append((chunk[held], state.exact.take(rows[held])))
            return blocks
        for list_no in range(state.ivf.nlist):
            with self._rw.read():
                blocks.append(ivf_lists.read_list(state.ivf, list_no))
        return blocks

    def _build(
        self,
        clustering: Clustering | None,
        quantization: Quantization,
        exact: ExactVectors | None,
        blocks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
    ) -> _State:
        """A filled state: code lists once a clustering and enough points exist, else float32."""
        router = _default_router(clustering)
        total = sum(len(ids) for ids, _ in blocks())
        if clustering is not None and buildable(quantization, total, clustering):
            if quantization.has_codebook_for(clustering):  # equal codes in every process
                ivf = stored_code_ivf(quantization, self.dim, self.metric, clustering)
            else:  # none stored fits: trained here, from this index's vectors
                sample = (  # catalyzer kinds learn nothing from the points here
                    _sample(blocks, total)
                    if quantization.stores_codebook
                    else np.empty((0, self.dim), np.float32)
                )
                ivf = train_code_ivf(quantization, self.dim, self.metric, clustering, sample)
                quantization = quantization.with_codebook(None, None)
            ivf_lists.fill(ivf, blocks, clustering, partial(list_codes, quantization))
            return _State(ivf, clustering, router, quantization, exact)
        flat = ivf_lists.new_ivf(self.dim, self.metric, clustering, hashtable=False)
        ivf_lists.fill(flat, blocks, clustering)
        return _State(flat, clustering, router, quantization, exact)

    def subset(self, allowed: np.ndarray, generation: int) -> VectorIndex | None:
        """A copy of the vectors whose ids ``allowed`` lets through, in the same lists.

        ``allowed`` is a little-endian bitmap over ids (an ``AllowedIds.bits``). Searching
        the copy reads only those vectors, where a selector on this index reads them all
        (a memory-bound scan skips distances, not memory). The lists are copied one at a
        time under the read lock, so writers are not held off; the copy is returned only
        if this index was at ``generation`` throughout (else None: a write landed). Code
        lists are encoded anew with the same codebooks, so the copy scores alike.
        """
        # One bool per id the bitmap covers, then False for every id beyond it.
        passes = np.append(np.unpackbits(allowed, bitorder="little").view(bool), False)
        state = self._state
        if state.exact is not None:
            return self._coded_subset(state, passes, generation)
        ivf = state.ivf
        copy = ivf_lists.new_ivf(self.dim, self.metric, state.clustering, hashtable=False)
        invlists: Any = copy.invlists
        total = 0
        for list_no in range(ivf.nlist):
            with self._rw.read():
                if self.generation != generation:
                    return None
                ids, vecs = ivf_lists.read_list(ivf, list_no, passes)
            if len(ids):
                codes = faiss.swig_ptr(vecs.view(np.uint8))
                invlists.add_entries(list_no, len(ids), faiss.swig_ptr(ids), codes)
                total += len(ids)
        if self.generation != generation:
            return None
        copy.ntotal = total
        copy.set_direct_map_type(ivf_lists.HASHTABLE)
        return VectorIndex.from_faiss(self.dim, self.metric, copy, state.clustering)

    def _coded_subset(
        self, state: _State, passes: np.ndarray, generation: int
    ) -> VectorIndex | None:
        exact = state.exact
        assert exact is not None
        with self._rw.read():
            if self.generation != generation:
                return None
            ids = exact.ids
            ids = ids[passes[np.minimum(ids, len(passes) - 1)]]
            kept = exact.copy_of(ids)
            ivf: Any = clone(state.ivf) if state.coded else None
        if ivf is None:
            view = VectorIndex(
                self.dim,
                self.metric,
                state.clustering,
                state.quantization,
                exact.storage,
                self.exact_dir,
            )
            view._state = view._build(
                state.clustering, Quantization(CodeKind.NONE), kept, kept.blocks
            )
            view._state = replace(view._state, quantization=state.quantization)
        else:
            ivf.reset()  # the same trained codebooks, empty lists
            encode = partial(list_codes, state.quantization)
            ivf_lists.fill(ivf, lambda: kept.blocks(WRITE_CHUNK), state.clustering, encode)
            view = VectorIndex.from_faiss(
                self.dim, self.metric, ivf, state.clustering, state.quantization, kept
            )
        if self.generation != generation:
            return None
        return view

    def _new_exact(self) -> ExactVectors:
        return ExactVectors(self.dim, self.exact_storage, self.exact_dir)

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


def _default_router(clustering: Clustering | None) -> Router | None:
    return centroid_router(clustering) if clustering is not None else None


def _carry_over(
    current: _State, new: _State, written: set[int] | None, *, shared_exact: bool
) -> None:
    """Give ``new`` the current vector of every id in ``written`` (none if it was removed).

    ``shared_exact``: ``new`` holds the current exact vectors, written all along.
    """
    if not written:
        return
    ids = np.fromiter(written, np.int64, len(written))
    if shared_exact:
        ivf_lists.remove(new.ivf, ids)
    else:
        _erase(new, ids)
    kept, x = _current_vectors(current, ids)
    if len(kept):
        if shared_exact:
            ivf_lists.add(
                new.ivf, _codes_of(new, x), ivf_lists.assign_lists(new.clustering, x), kept
            )
        else:
            _write(new, kept, x, ivf_lists.assign_lists(new.clustering, x))


def _current_vectors(state: _State, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids still held, their prepared vectors) as ``state`` holds them."""
    if state.exact is not None:
        rows = state.exact.rows_of(ids)
        held = rows >= 0
        return ids[held], state.exact.take(rows[held])
    kept: list[int] = []
    vecs: list[np.ndarray] = []
    for pid in ids.tolist():
        try:
            vecs.append(np.asarray(state.ivf.reconstruct(pid)))
        except RuntimeError:  # faiss's hashtable lookup throws on a missing key: removed
            continue
        kept.append(pid)
    if not kept:
        return np.empty(0, np.int64), np.empty((0, state.ivf.d), np.float32)
    return np.array(kept, np.int64), np.ascontiguousarray(np.vstack(vecs), dtype=np.float32)


def _write(state: _State, ids: np.ndarray, x: np.ndarray, assign: np.ndarray | None) -> None:
    """Replace or add ``ids`` in the lists and the exact vectors (caller: exclusive)."""
    if state.exact is not None:
        present = ids[state.exact.contains(ids)]
        ivf_lists.remove(state.ivf, present)
        state.exact.put(ids, x)
    else:
        ivf_lists.remove(state.ivf, ids)
    if assign is None:
        assign = ivf_lists.assign_lists(state.clustering, x)
    ivf_lists.add(state.ivf, _codes_of(state, x), assign, ids)


def _codes_of(state: _State, x: np.ndarray) -> np.ndarray:
    """What ``state``'s lists hold for ``x``: catalyzer codes in code lists, else ``x``."""
    return list_codes(state.quantization, x) if state.coded else x


def code_metric_of(q: Quantization, metric: Metric) -> int | None:
    """The faiss metric code lists of kind ``q`` compare with (None: Hamming)."""
    if q.kind is CodeKind.CATALYZER_SIGN:
        return None
    if q.kind is CodeKind.CATALYZER_LATTICE:
        return faiss.METRIC_INNER_PRODUCT
    return faiss_metric(metric)


def _erase(state: _State, ids: np.ndarray) -> int:
    """Remove ``ids`` from the lists and the exact vectors; how many were held."""
    if state.exact is not None:
        present = ids[state.exact.contains(ids)]
        ivf_lists.remove(state.ivf, present)
        return state.exact.remove(present)
    return ivf_lists.remove(state.ivf, ids)


def _sample(
    blocks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]], total: int
) -> np.ndarray:
    """About ``TRAIN_SAMPLE`` vectors drawn evenly from ``blocks()``, for codebooks."""
    share = min(1.0, TRAIN_SAMPLE / max(total, 1))
    rng = np.random.default_rng(0)
    picked = [vecs[rng.random(len(vecs)) < share] if share < 1 else vecs for _, vecs in blocks()]
    return np.ascontiguousarray(np.concatenate(picked), dtype=np.float32)


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


def _last_occurrence(ids: np.ndarray) -> np.ndarray | slice:
    """The rows to keep of a batch: all but the last of repeated ids are dropped, as if the
    batch were applied in order."""
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    if len(first_in_reversed) == len(ids):
        return slice(None)
    return np.sort(len(ids) - 1 - first_in_reversed)


def _check_assignment(lists: np.ndarray, n: int) -> np.ndarray:
    a = np.ascontiguousarray(lists, dtype=np.int64)
    if a.shape != (n,):
        raise ValueError(f"lists must hold one list number per vector, got shape {a.shape}")
    if a.size and a.min() < 0:
        raise ValueError("list numbers must be non-negative")
    return a


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
