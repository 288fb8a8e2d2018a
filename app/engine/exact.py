"""Exact vectors kept beside the code lists: what re-ranking scores and what rebuilds read.

Codes cannot be decoded back to the vectors they came from, so a compressed index keeps
every prepared vector here, by id, in one of three places (``VECROUTE_EXACT_VECTORS``):

- ``float32``: in memory, 4 bytes per dimension; re-ranked scores are the exact ones;
- ``float16``: in memory, 2 bytes per dimension; scores are exact for the half-precision
  vectors (relative error ~1e-3);
- ``mmap``: float32 in a private file mapped into memory (unlinked at creation, so it goes
  with the process), paged in by the kernel on demand: only the few hundred rows a query
  re-ranks are touched, and resident memory holds the page cache's choice, not the whole.

Ids map to rows through two sorted int64 arrays (16 bytes per vector, no Python objects);
freed rows are reused. While the ids held are dense (their range below ``DENSE_IDS`` times
their count, as a collection's ids from the store's increasing sequence are, wherever that
range starts), a table indexed by id less the smallest gives each row in one read:
re-ranking looks up a few dozen ids per query, and a binary search over the sorted ids
costs 10-20 us of that (cache misses), the table a few (pq96, 70 candidates: 19 -> 4 us).

Not thread-safe on its own: ``VectorIndex`` guards it with the same reader-writer lock as
its lists, so a search never re-ranks an id whose row was freed.
"""

from __future__ import annotations

import mmap
import tempfile
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from app.engine.metric import Metric, products_by_row

_GROWTH = 1.5
_MIN_CAPACITY = 64
# The id table is kept while the ids held span fewer than this many times their count (at
# most 8 * DENSE_IDS bytes per vector, 8 for dense ids).
DENSE_IDS = 2


class ExactStorage(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    MMAP = "mmap"


class ExactVectors:
    """Prepared vectors by int64 id, in memory (float32/float16) or memory-mapped."""

    def __init__(self, dim: int, storage: ExactStorage, directory: Path | None = None) -> None:
        self.dim = int(dim)
        self.storage = ExactStorage(storage)
        self.directory = directory
        self._dtype = np.float16 if self.storage is ExactStorage.FLOAT16 else np.float32
        self._keys = np.empty(0, np.int64)  # sorted ids
        self._rows = np.empty(0, np.int64)  # row of each key
        self._free = np.empty(0, np.int64)  # rows released by removals, reused first
        self._high = 0  # rows handed out so far
        # Row by id - _base (-1: not held), its last entry -1 for every id outside; None:
        # ids sparse.
        self._table: np.ndarray | None = np.full(1, -1, np.int64)
        self._base = 0
        self._file: Any = None
        self._data = self._allocate(_MIN_CAPACITY)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def ids(self) -> np.ndarray:
        """Every id held, sorted (a read-only view)."""
        view = self._keys.view()
        view.flags.writeable = False
        return view

    def bytes_per_vector(self) -> int:
        """Resident bytes per vector: the id map, and the row itself unless memory-mapped."""
        row = 0 if self.storage is ExactStorage.MMAP else self.dim * self._dtype().itemsize
        table = self._table.nbytes / max(len(self._keys), 1) if self._table is not None else 0
        return round(16 + table) + row

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The row of each id, -1 where it is not held (nor padding -1)."""
        ids = np.asarray(ids, dtype=np.int64)
        table = self._table
        if table is not None:  # ids below the base (as uint64: huge) or beyond read the last
            return table.take(np.minimum((ids - self._base).view(np.uint64), len(table) - 1))
        keys = self._keys
        if not len(keys):
            return np.full(ids.shape, -1, np.int64)
        pos = keys.searchsorted(ids)  # an id beyond the last key clips to it, and misses
        rows = self._rows.take(pos, mode="clip")
        rows[keys.take(pos, mode="clip") != ids] = -1
        return rows

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return self.rows_of(ids) >= 0

    def get(self, ids: np.ndarray) -> np.ndarray:
        """float32 (len(ids), dim) of ids that must all be held."""
        rows = self.rows_of(ids)
        if (rows < 0).any():
            raise KeyError("some ids are not held")
        return self.take(rows)

    def take(self, rows: np.ndarray) -> np.ndarray:
        return np.take(self._data, rows, axis=0).astype(np.float32, copy=False)

    def put(self, ids: np.ndarray, x: np.ndarray) -> None:
        """Store ``x`` under distinct ``ids`` (replacing those held)."""
        ids = np.asarray(ids, dtype=np.int64)
        if x.shape != (len(ids), self.dim):
            raise ValueError(f"expected ({len(ids)}, {self.dim}) vectors, got {x.shape}")
        rows = self.rows_of(ids)
        new = rows < 0
        n_new = int(new.sum())
        if n_new:
            reused = self._free[len(self._free) - min(n_new, len(self._free)) :]
            self._free = self._free[: len(self._free) - len(reused)]
            fresh = np.arange(self._high, self._high + n_new - len(reused), dtype=np.int64)
            self._high += len(fresh)
            self._ensure(self._high)
            rows[new] = np.concatenate([reused, fresh])
            order = np.argsort(ids[new], kind="stable")
            new_ids, new_rows = ids[new][order], rows[new][order]
            at = np.searchsorted(self._keys, new_ids)
            self._keys = np.insert(self._keys, at, new_ids)
            self._rows = np.insert(self._rows, at, new_rows)
            self._index(new_ids, new_rows)
        self._data[rows] = x

    def remove(self, ids: np.ndarray) -> int:
        """Forget ``ids``; returns how many were held."""
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if not len(ids) or not len(self._keys):
            return 0
        pos = np.minimum(np.searchsorted(self._keys, ids), len(self._keys) - 1)
        held = pos[self._keys[pos] == ids]
        if not len(held):
            return 0
        self._free = np.concatenate([self._free, self._rows[held]])
        if self._table is not None:
            self._table[self._keys[held] - self._base] = -1
        self._keys = np.delete(self._keys, held)
        self._rows = np.delete(self._rows, held)
        return len(held)

    def _index(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Enter new ``ids`` (sorted, now in ``_keys``) in the id table: made anew from the
        smallest id when one falls outside it, dropped once the ids are too sparse for one."""
        low, span = int(self._keys[0]), int(self._keys[-1] - self._keys[0]) + 1
        if span > DENSE_IDS * len(self._keys):
            self._table = None
            return
        table, base = self._table, self._base
        if table is None or low < base or low + span >= base + len(table):
            # One trailing -1 answers every id outside; growth leaves room for more ids.
            size = max(span + 1, int(len(table) * _GROWTH) if table is not None else 0)
            size = min(size, DENSE_IDS * len(self._keys) + 1)
            table = np.full(size, -1, np.int64)
            table[self._keys - low] = self._rows
            self._table, self._base = table, low
            return
        table[ids - base] = rows

    def blocks(self, size: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float32 vectors) in id order; read while no writer runs (caller's lock)."""
        for start in range(0, len(self._keys), size):
            ids = self._keys[start : start + size].copy()
            yield ids, self.take(self._rows[start : start + size])

    def score(self, q: np.ndarray, candidates: np.ndarray, metric: Metric) -> np.ndarray:
        """Exact scores (higher is better) of each query's candidate ids; -inf where an id is
        padding or no longer held. ``q``: (n, d) prepared, ``candidates``: (n, c).

        float32 rows (in memory or mapped) are scored in place by one faiss call, which
        reads only the candidates' rows and skips the -1 rows; float16 rows are gathered
        and widened first.
        """
        rows = self.rows_of(candidates)
        if self.storage is ExactStorage.FLOAT16:
            return self._score_gathered(q, rows, metric)
        if metric is Metric.L2:  # squared distances, +inf for -1 rows
            return np.negative(products_by_row(q, self._data, rows, l2=True))
        return products_by_row(q, self._data, rows, l2=False)

    def _score_gathered(self, q: np.ndarray, rows: np.ndarray, metric: Metric) -> np.ndarray:
        if rows.size and rows.min() >= 0:  # the common case: one gather, one product
            x = self.take(rows.reshape(-1)).reshape(*rows.shape, self.dim)
            if metric is Metric.L2:
                diff = x - q[:, None, :]
                return -np.einsum("ncd,ncd->nc", diff, diff)
            return np.einsum("ncd,nd->nc", x, q)
        held = rows >= 0
        scores = np.full(rows.shape, -np.inf, np.float32)
        if not held.any():
            return scores
        which = np.nonzero(held)
        x = self.take(rows[which])
        qq = q[which[0]]
        if metric is Metric.L2:
            diff = qq - x
            scores[which] = -np.einsum("ij,ij->i", diff, diff)
        else:
            scores[which] = np.einsum("ij,ij->i", qq, x)
        return scores

    def copy_of(self, ids: np.ndarray) -> ExactVectors:
        """A new store holding ``ids`` (all held here), same storage."""
        out = ExactVectors(self.dim, self.storage, self.directory)
        for start in range(0, len(ids), 8192):
            chunk = ids[start : start + 8192]
            out.put(chunk, self.get(chunk))
        return out

    def reserve(self, more: int) -> None:
        """Room for ``more`` rows beyond those handed out, taken at once rather than grown
        (rows freed by removals, reused first, are not counted in)."""
        self._ensure(self._high + more)

    def _ensure(self, rows: int) -> None:
        if rows <= len(self._data):
            return
        old = self._data
        grown = self._allocate(max(rows, int(len(old) * _GROWTH)))
        if self.storage is not ExactStorage.MMAP:  # a mapping of the grown file has them
            grown[: len(old)] = old
        self._data = grown

    def _allocate(self, capacity: int) -> np.ndarray:
        if self.storage is not ExactStorage.MMAP:
            return np.empty((capacity, self.dim), self._dtype)
        if self._file is None:
            if self.directory is not None:
                self.directory.mkdir(parents=True, exist_ok=True)
            # Unlinked at once (O_TMPFILE where available): the rows live as long as we do.
            self._file = tempfile.TemporaryFile(dir=self.directory)  # noqa: SIM115 (kept open)
        nbytes = capacity * self.dim * 4
        self._file.truncate(nbytes)
        # A new mapping of the grown file; the old one stays valid for whoever holds it.
        mapped = mmap.mmap(self._file.fileno(), nbytes)
        # Re-ranking reads scattered rows: no read-ahead of neighbouring pages on a fault.
        mapped.madvise(mmap.MADV_RANDOM)
        return np.ndarray((capacity, self.dim), np.float32, buffer=mapped)
