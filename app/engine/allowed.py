"""The ids a filter lets through, as the bitmap faiss's selector reads, and a cache of them.

Filters repeat: a tenant, a category, a language. Evaluating one over the payload columns
and packing its bitmap costs ~80 us per 60,000 points (more than a tenth of a search at
recall 0.95), a cache hit ~5 us, so the bitmaps of recently used filters are kept for as
long as the payloads they were computed on do not change.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import faiss
import numpy as np

# Entries past this count are dropped least recently used, whatever their size.
MAX_ENTRIES = 1024


@dataclass(frozen=True, eq=False)
class AllowedIds:
    """The ids a filter lets through, as the bitmap faiss's selector reads.

    The selector points into ``bits`` without owning it: both live as long as this object,
    which is immutable, so one instance serves concurrent searches.
    """

    count: int
    bits: np.ndarray
    selector: faiss.IDSelectorBitmap

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> AllowedIds:
        """From a boolean mask over internal ids (ids beyond its end are not allowed)."""
        if mask.ndim != 1 or mask.dtype != np.bool_:
            raise ValueError("mask must be a 1-d boolean array")
        bits = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
        return cls(int(np.count_nonzero(mask)), bits, selector)


class AllowedCache:
    """``AllowedIds`` by filter key, for one state (``generation``) of the payloads.

    An entry computed on an older state is never returned; the first entry of a newer state
    drops all older ones at once. Least recently used entries go past ``max_bytes`` of
    bitmaps (``0`` disables the cache).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._generation = -1
        self._entries: OrderedDict[str, AllowedIds] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: str, generation: int) -> AllowedIds | None:
        with self._lock:
            if generation != self._generation:
                return None
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
            return hit

    def put(self, key: str, generation: int, allowed: AllowedIds) -> None:
        size = allowed.bits.nbytes
        with self._lock:
            if generation < self._generation:
                return  # evaluated on a state that has changed since
            if generation > self._generation:
                self._entries.clear()
                self._bytes = 0
                self._generation = generation
            if size > self.max_bytes:
                return
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.bits.nbytes
            self._entries[key] = allowed
            self._bytes += size
            while self._bytes > self.max_bytes or len(self._entries) > MAX_ENTRIES:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.bits.nbytes
