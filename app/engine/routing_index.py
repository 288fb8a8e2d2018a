"""A routing-only index: the clustering and the list of every point, no vectors.

What a coordinator needs of a collection whose vectors its shards hold: the clustering to
route with (and to label new points with their list, ``lists_of``), which ids it holds and
in which list (the count, the list sizes). A point's vector is seen when it is written,
assigned to its list and dropped.

Storage: one int32 list number per id of a dense id range (``-1``: not held), grown at
either end as ids arrive, so a write and a removal are numpy scatters and a point costs
4 bytes of the range it sits in (ids are the store's, increasing as rows are written; a
range shared with other collections' ids costs their slots too). ``_sizes`` counts the
points per list.

Concurrency: writers are serialised by the caller (the registry's apply lock); ``_lock``
makes each write one step for readers of the count and the sizes.
"""

from __future__ import annotations

import threading

import numpy as np

from app.engine.clustering import Clustering
from app.engine.codes import Quantization
from app.engine.ivf import Assignment
from app.engine.metric import Metric, prepare

NOT_HELD = -1


class RoutingIndex:
    """The ids of a collection and their lists under one clustering."""

    holds_vectors = False

    def __init__(self, dim: int, metric: Metric, clustering: Clustering) -> None:
        if clustering.dim != dim or clustering.metric is not Metric(metric):
            raise ValueError("the clustering does not match the dimension or the metric")
        self.dim = int(dim)
        self.metric = Metric(metric)
        self.clustering = clustering
        self.quantization = Quantization()  # none held: the shards hold float lists
        self._lock = threading.Lock()
        self._base = 0  # the id of _list_of[0]
        self._list_of = np.empty(0, np.int32)
        self._sizes = np.zeros(clustering.nlist, np.int64)

    @property
    def count(self) -> int:
        return int(self._sizes.sum())

    def __len__(self) -> int:
        return self.count

    def list_sizes(self) -> np.ndarray:
        with self._lock:
            return self._sizes.copy()

    def lists_held(self, ids: np.ndarray) -> np.ndarray:
        """The list of each of ``ids``, ``NOT_HELD`` for those not held."""
        ids = np.asarray(ids, np.int64)
        with self._lock:
            slot = ids - self._base
            inside = (slot >= 0) & (slot < len(self._list_of))
            out = np.full(len(ids), NOT_HELD, np.int64)
            out[inside] = self._list_of[slot[inside]]
        return out

    def memory_bytes(self) -> int:
        """The id range's list numbers, the list sizes and the representatives (as
        ``VectorIndex.memory_bytes`` counts them; ``bytes_per_vector`` leaves them out)."""
        return int(self._list_of.nbytes + self._sizes.nbytes) + self.clustering.nlist * self.dim * 4

    def bytes_per_vector(self) -> float:
        count = self.count
        return (self._list_of.nbytes + self._sizes.nbytes) / count if count else 0.0

    def lists_of(self, vectors: np.ndarray) -> Assignment:
        """(clustering version, the list of each raw vector), as ``VectorIndex.lists_of``."""
        c = self.clustering
        return c.version, c.assign(prepare(vectors, self.metric, self.dim))

    def upsert(
        self, ids: np.ndarray, vectors: np.ndarray, assigned: Assignment | None = None
    ) -> None:
        """Hold ``ids`` in the lists of raw ``vectors`` (``assigned``: computed already, used
        if it is for this clustering); the vectors are not kept."""
        ids = np.asarray(ids, np.int64)
        if assigned is not None and assigned[0] == self.clustering.version:
            lists = np.asarray(assigned[1], np.int64)
        else:
            lists = self.clustering.assign(prepare(vectors, self.metric, self.dim))
        self.place(ids, lists)

    def place(self, ids: np.ndarray, lists: np.ndarray) -> None:
        """Hold ``ids`` in ``lists`` (list numbers of this clustering); the last of a
        repeated id wins."""
        ids = np.asarray(ids, np.int64)
        lists = np.asarray(lists, np.int64)
        if ids.shape != lists.shape or ids.ndim != 1:
            raise ValueError("ids and lists must be 1-d and of one length")
        if not len(ids):
            return
        if ids.min() < 0 or lists.min() < 0 or lists.max() >= self.clustering.nlist:
            raise ValueError(f"ids must be non-negative, lists in [0, {self.clustering.nlist})")
        last = len(ids) - 1 - np.unique(ids[::-1], return_index=True)[1]
        ids, lists = ids[last], lists[last]
        with self._lock:
            self._cover(int(ids.min()), int(ids.max()))
            slot = ids - self._base
            self._drop(slot)
            self._list_of[slot] = lists
            np.add.at(self._sizes, lists, 1)

    def remove(self, ids: np.ndarray) -> int:
        """Stop holding ``ids``; returns how many were held."""
        ids = np.unique(np.asarray(ids, np.int64))
        with self._lock:
            slot = ids - self._base
            slot = slot[(slot >= 0) & (slot < len(self._list_of))]
            return self._drop(slot)

    def _drop(self, slot: np.ndarray) -> int:
        """Under ``_lock``: empty the distinct ``slot``s; how many held an id."""
        held = slot[self._list_of[slot] != NOT_HELD]
        np.subtract.at(self._sizes, self._list_of[held], 1)
        self._list_of[held] = NOT_HELD
        return len(held)

    def _cover(self, low: int, high: int) -> None:
        """Under ``_lock``: grow the id range to hold ``low``..``high``, doubling."""
        size = len(self._list_of)
        if not size:
            self._base = low
        start, end = self._base, self._base + size
        if low >= start and high < end:
            return
        new_start = min(start, max(0, low - size)) if low < start else start
        new_end = max(end, high + 1 + size) if high >= end else end
        grown = np.full(new_end - new_start, NOT_HELD, np.int32)
        grown[start - new_start : end - new_start] = self._list_of
        self._base, self._list_of = new_start, grown
