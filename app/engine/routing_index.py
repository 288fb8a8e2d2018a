"""A routing-only index: the clustering and the list of every point, no vectors.

What a coordinator needs of a collection whose vectors its shards hold: the clustering to
route with (and to label new points with their list, ``lists_of``), which ids it holds and
in which list (the count, the list sizes). A point's vector is seen when it is written,
assigned to its list and dropped.

Storage: pages of ``PAGE`` int32 list numbers (``-1``: not held), one per run of ``PAGE``
consecutive ids that holds any, so a write and a removal are numpy scatters and a point
costs 4 bytes of the pages its id falls in: the store's ids increase as rows are written,
so a collection's ids fill its pages, except where other collections' rows interleave.
``_sizes`` counts the points per list.

Concurrency: writers are serialised by the caller (the registry's apply lock); ``_lock``
makes each write one step for readers of the count, the sizes and a snapshot.

A snapshot (``save_routing_snapshot``) is the held ids and their lists: a restart loads
it and catches up from the store, instead of reading every row's label.
"""

from __future__ import annotations

import json
import threading
import zipfile
from typing import Any, BinaryIO

import numpy as np

from app.engine.clustering import Clustering
from app.engine.codes import Quantization
from app.engine.ivf import Assignment
from app.engine.metric import Metric, prepare

NOT_HELD = -1
PAGE_BITS = 10
PAGE = 1 << PAGE_BITS  # ids per page: 4 KiB of list numbers
PAGE_MASK = PAGE - 1
PAGE_OVERHEAD = 200  # a page's numpy header and its dict entry, about


class RoutingIndex:
    """The ids of a collection and their lists under one clustering."""

    holds_vectors = False

    def __init__(self, dim: int, metric: Metric, clustering: Clustering) -> None:
        if clustering.dim != dim or clustering.metric is not Metric(metric):
            raise ValueError("the clustering does not match the dimension or the metric")
        self.dim = int(dim)
        self.metric = Metric(metric)
        self.clustering = clustering
        # What the shards' lists hold (set by whoever follows them); none held here.
        self.quantization = Quantization()
        self._lock = threading.Lock()
        self._pages: dict[int, np.ndarray] = {}  # id >> PAGE_BITS -> int32[PAGE]
        self._sizes = np.zeros(clustering.nlist, np.int64)

    @property
    def count(self) -> int:
        return int(self._sizes.sum())

    def __len__(self) -> int:
        return self.count

    def list_sizes(self) -> np.ndarray:
        with self._lock:
            return self._sizes.copy()

    def held(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids held, ascending; the list of each)."""
        ids, lists = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
        with self._lock:
            for page_no in sorted(self._pages):
                page = self._pages[page_no]
                slot = np.flatnonzero(page != NOT_HELD)
                ids.append(slot + (page_no << PAGE_BITS))
                lists.append(page[slot].astype(np.int64))
        return np.concatenate(ids), np.concatenate(lists)

    def lists_held(self, ids: np.ndarray) -> np.ndarray:
        """The list of each of ``ids``, ``NOT_HELD`` for those not held."""
        ids = np.asarray(ids, np.int64)
        out = np.full(len(ids), NOT_HELD, np.int64)
        with self._lock:
            for page_no, rows in _by_page(ids):
                page = self._pages.get(page_no)
                if page is not None:
                    out[rows] = page[ids[rows] & PAGE_MASK]
        return out

    def _bytes(self) -> int:
        return len(self._pages) * (PAGE * 4 + PAGE_OVERHEAD) + int(self._sizes.nbytes)

    def memory_bytes(self) -> int:
        """The pages, the list sizes and the representatives (as ``VectorIndex`` counts
        them; ``bytes_per_vector`` leaves them out)."""
        return self._bytes() + self.clustering.nlist * self.dim * 4

    def bytes_per_vector(self) -> float:
        count = self.count
        return self._bytes() / count if count else 0.0

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
            for page_no, rows in _by_page(ids):
                page = self._pages.get(page_no)
                if page is None:
                    page = self._pages[page_no] = np.full(PAGE, NOT_HELD, np.int32)
                slot = ids[rows] & PAGE_MASK
                was = page[slot]
                np.subtract.at(self._sizes, was[was != NOT_HELD], 1)
                page[slot] = lists[rows]
                np.add.at(self._sizes, lists[rows], 1)

    def remove(self, ids: np.ndarray) -> int:
        """Stop holding ``ids``; returns how many were held."""
        ids = np.unique(np.asarray(ids, np.int64))
        removed = 0
        with self._lock:
            for page_no, rows in _by_page(ids):
                page = self._pages.get(page_no)
                if page is None:
                    continue
                slot = ids[rows] & PAGE_MASK
                slot = slot[page[slot] != NOT_HELD]
                np.subtract.at(self._sizes, page[slot], 1)
                page[slot] = NOT_HELD
                removed += len(slot)
                if not (page != NOT_HELD).any():
                    del self._pages[page_no]
        return removed


def _by_page(ids: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(page number, the rows of ``ids`` in it) for each page ``ids`` touch (none for no
    ids: a change feed with nothing removed is the common case)."""
    if not len(ids):
        return []
    pages = ids >> PAGE_BITS
    order = np.argsort(pages, kind="stable")
    numbers, starts = np.unique(pages[order], return_index=True)
    return list(zip(numbers.tolist(), np.split(order, starts[1:]), strict=True))


def save_routing_snapshot(index: RoutingIndex, out: BinaryIO, meta: dict[str, Any]) -> None:
    """Write ``index``'s ids and lists, its clustering's version and the caller's ``meta``
    (a zip: each member is CRC-checked when read back)."""
    ids, lists = index.held()
    header = {
        "dim": index.dim,
        "metric": str(index.metric),
        "clustering_version": index.clustering.version,
        "meta": meta,
    }
    np.savez(out, ids=ids, lists=lists, header=np.frombuffer(json.dumps(header).encode(), np.uint8))


def load_routing_snapshot(
    src: BinaryIO, clustering: Clustering
) -> tuple[RoutingIndex, dict[str, Any]]:
    """The index ``save_routing_snapshot`` wrote, under ``clustering``, and its ``meta``;
    ``ValueError`` for a file that is not one, or does not fit ``clustering``."""
    try:
        with np.load(src, allow_pickle=False) as f:
            header = json.loads(f["header"].tobytes())
            ids, lists = f["ids"], f["lists"]
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ValueError(f"not a routing snapshot: {exc}") from None
    if header.get("clustering_version") != clustering.version:  # its lists mean other lists
        raise ValueError(
            f"a routing snapshot of clustering {header.get('clustering_version')}, "
            f"not {clustering.version}"
        )
    index = RoutingIndex(int(header["dim"]), Metric(header["metric"]), clustering)
    index.place(ids, lists)
    return index, dict(header["meta"])
