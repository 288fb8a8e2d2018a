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
MAX_ENTRIES = 4096


@dataclass(frozen=True, eq=False)
class AllowedIds:
    """The ids a filter lets through, as the bitmap faiss's selector reads.

    The selector points into ``bits`` without owning it: both live as long as this object,
    which is immutable, so one instance serves concurrent searches. ``origin`` names what
    the bitmap answers, (payload index, filter key, payload generation), when it comes from
    a payload index: equal origins, equal bitmaps.
    """

    count: int
    bits: np.ndarray
    selector: faiss.IDSelectorBitmap
    origin: tuple[int, str, int] | None = None

    @classmethod
    def from_mask(cls, mask: np.ndarray, origin: tuple[int, str, int] | None = None) -> AllowedIds:
        """From a boolean mask over internal ids (ids beyond its end are not allowed)."""
        if mask.ndim != 1 or mask.dtype != np.bool_:
            raise ValueError("mask must be a 1-d boolean array")
        bits = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
        return cls(int(np.count_nonzero(mask)), bits, selector, origin)


class AllowedCache:
    """``AllowedIds`` by (owner, filter key), each valid for one state of its owner's payloads.

    One cache serves every collection of a process, so that ``max_bytes`` of bitmaps bounds
    them all (``0`` disables it). An owner (a payload index) numbers its states
    (``generation``): an entry is returned only for the state it was computed on, and
    entries of older states wait for eviction, least recently used first.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, str], tuple[int, AllowedIds]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, owner: int, key: str, generation: int) -> AllowedIds | None:
        with self._lock:
            entry = self._entries.get((owner, key))
            if entry is None or entry[0] != generation:
                return None
            self._entries.move_to_end((owner, key))
            return entry[1]

    def put(self, owner: int, key: str, generation: int, allowed: AllowedIds) -> None:
        size = allowed.bits.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop((owner, key), None)
            if old is not None:
                if old[0] > generation:  # evaluated on a state that has changed since
                    self._entries[(owner, key)] = old
                    return
                self._bytes -= old[1].bits.nbytes
            self._entries[(owner, key)] = (generation, allowed)
            self._bytes += size
            while self._bytes > self.max_bytes or len(self._entries) > MAX_ENTRIES:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped.bits.nbytes
