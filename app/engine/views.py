"""Copies of the vectors that repeated filters let through ("views"), built when they pay.

A filtered search through a selector still reads every vector of the lists it probes: the
scan is memory-bound, and skipping a non-matching vector's distance does not skip its
memory, so at 50% selectivity a filtered search costs what an unfiltered one does. A view
(``VectorIndex.subset``) holds only the matching vectors, in the same lists, and the same
plan over it reads a share ``s`` of the memory. Measured on the Debian data (60,631
documents, 985 lists, one thread): nprobe 192 at 50% 674 us against 1,383 us through the
selector; the exact plan at 10% 788 us against 3,652 us; same results.

When to build one is a rent-or-buy problem: a view costs a pass over the index's lists that
copies the matches (on the same data: 20 ms at 0.1%, 67 ms at 50%), and is void after the
next write to the payloads or the vectors.
So each filter pays rent, the time a view would have saved its searches (a search through
the selector reads all ``count`` vectors of its lists, on the view ``matches`` of them, so
that is the share ``1 - matches / count`` of its time), and its view is bought (copied on a
background thread) once the rent reaches the expected copy time. Whatever the sequence of
searches and writes, that costs at most twice the best choice in hindsight (the ski-rental
bound, with scan time proportional to the vectors read): a filter used once, or a
collection written to between every few searches, does not pay for copies it never uses.

A view serves exactly the state it was copied from: its bitmap's origin (filter and payload
generation) and the vector index's generation. Every write bumps one of them, so a stale
view is never searched; it is dropped when its filter is next charged, or evicted.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass

from app.engine.allowed import AllowedIds
from app.engine.ivf import VectorIndex

log = logging.getLogger(__name__)

# Copy time per indexed vector until a copy has been timed (measured 0.3-1.1 us, 384-d).
INITIAL_COPY_SECONDS_PER_VECTOR = 1e-6
# Filters tracked (rent or view) past this count are dropped least recently used.
MAX_ENTRIES = 4096

_Key = tuple[int, str]  # (payload index, filter key)
_State = tuple[int, int]  # (payload generation, vector index generation)


@dataclass(eq=False)
class _Entry:
    source: weakref.ref[VectorIndex]
    state: _State
    rent: float = 0.0  # seconds a view would have saved the searches in ``state``
    building: bool = False
    view: VectorIndex | None = None
    nbytes: int = 0


class FilterViews:
    """Views of repeated filters, for every collection of a process, in ``max_bytes``.

    ``max_bytes`` bounds the views of all collections (``0`` disables them); least
    recently used views are dropped first. Copies run one at a time on a background thread.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._bytes = 0
        self._copy_seconds_per_vector = INITIAL_COPY_SECONDS_PER_VECTOR
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="filter-views")
        self._pending: set[Future[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        """Views held."""
        with self._lock:
            return sum(entry.view is not None for entry in self._entries.values())

    @property
    def nbytes(self) -> int:
        return self._bytes

    def view(self, index: VectorIndex, allowed: AllowedIds) -> VectorIndex | None:
        """The view of ``allowed`` over ``index`` as they are now, if one has been built."""
        if allowed.origin is None or not self.max_bytes:
            return None
        key, state = _key_state(index, allowed.origin)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.state != state or entry.source() is not index:
                return None
            if entry.view is not None:
                self._entries.move_to_end(key)
            return entry.view

    def charge(self, index: VectorIndex, allowed: AllowedIds, seconds: float) -> None:
        """Charge a search of ``seconds`` without a view; start a copy once one is due."""
        if allowed.origin is None or not self.max_bytes:
            return
        key, state = _key_state(index, allowed.origin)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.source() is not index or _newer(state, entry.state):
                entry = self._track(key, _Entry(weakref.ref(index), state))
            elif entry.state != state:  # this search read an older state than the entry's
                return
            entry.rent += seconds * (1 - min(1.0, allowed.count / max(index.count, 1)))
            if self._closed or entry.building or entry.view is not None:
                return
            if entry.rent < index.count * self._copy_seconds_per_vector:
                return
            if _expected_bytes(index, allowed) > self.max_bytes:
                return
            entry.building = True
        future = self._builder.submit(self._build, key, entry, index, allowed)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._finished)

    def forget(self, index: object) -> None:
        """Drop the views copied from ``index`` (its collection is gone, or its payloads were
        indexed anew), and those whose index no longer exists."""
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.source() in (index, None)]:
                self._drop_view(self._entries.pop(key))

    def wait(self) -> None:
        """Block until the copies started so far are done (tests, benchmarks)."""
        with self._lock:
            pending = list(self._pending)
        wait_for(pending)

    def close(self) -> None:
        """Drop pending copies and every view; a copy under way finishes on its own."""
        with self._lock:
            self._closed = True
            self._entries.clear()
            self._bytes = 0
        self._builder.shutdown(wait=False, cancel_futures=True)

    def _build(self, key: _Key, entry: _Entry, index: VectorIndex, allowed: AllowedIds) -> None:
        started = time.perf_counter()
        try:
            view = index.subset(allowed.bits, entry.state[1])
        except Exception:
            log.exception("filter view copy failed")
            view = None
        seconds = time.perf_counter() - started
        with self._lock:
            entry.building = False
            if view is None:  # a write landed (or the copy failed): earn the rent again
                entry.rent = 0.0
                return
            self._copy_seconds_per_vector = seconds / max(index.count, 1)
            if self._entries.get(key) is not entry:  # replaced or evicted meanwhile
                return
            entry.view, entry.nbytes = view, view.memory_bytes()
            self._bytes += entry.nbytes
            self._entries.move_to_end(key)
            for other in list(self._entries.values()):
                if self._bytes <= self.max_bytes:
                    break
                self._drop_view(other)

    def _finished(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _track(self, key: _Key, entry: _Entry) -> _Entry:
        old = self._entries.pop(key, None)
        if old is not None:
            self._drop_view(old)
        self._entries[key] = entry
        while len(self._entries) > MAX_ENTRIES:
            _, dropped = self._entries.popitem(last=False)
            self._drop_view(dropped)
        return entry

    def _drop_view(self, entry: _Entry) -> None:
        """Drop a view; its filter earns the next copy anew (two views that do not fit the
        budget together take turns at the rent-or-buy pace, not copy after copy)."""
        self._bytes -= entry.nbytes
        entry.view, entry.nbytes, entry.rent = None, 0, 0.0


def _key_state(index: VectorIndex, origin: tuple[int, str, int]) -> tuple[_Key, _State]:
    owner, key, payload_generation = origin
    return (owner, key), (payload_generation, index.generation)


def _newer(state: _State, than: _State) -> bool:
    return state != than and state[0] >= than[0] and state[1] >= than[1]


def _expected_bytes(index: VectorIndex, allowed: AllowedIds) -> int:
    return index.memory_bytes() * allowed.count // max(index.count, 1)
