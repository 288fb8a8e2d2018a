"""A reader-writer lock: searches share the index, mutations of its lists are exclusive.

faiss's inverted lists are plain ``std::vector``s: a search scanning a list while an add
grows (reallocates) it, or a removal swaps entries in it, reads freed memory. Searches may
run side by side, so they share; writes exclude everyone.

Writer preference: once a writer waits, new readers queue behind it. Without it a steady
stream of searches would starve writes forever. Writers keep their exclusive sections
short (the index chunks large writes), so readers wait at most one chunk.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RWLock:
    """Many readers or one writer; not re-entrant (a reader must not ask to write)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        # One stateless context object serves every reader (a generator-based context
        # manager would cost a generator per search).
        self._reading = _Reading(self)

    def read(self) -> _Reading:
        """``with lock.read():`` shares the lock for the block."""
        return self._reading

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Reading:
    """The context of ``RWLock.read``: holds no state, so all readers share it.

    It takes the mutex itself (a C-level ``with``) rather than through the condition's
    Python methods, and wakes waiters only when a writer waits (readers wait for writers
    alone): a search's acquire and release cost a third of the instructions.
    """

    __slots__ = ("_lock",)

    def __init__(self, lock: RWLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        lock = self._lock
        with lock._mutex:
            while lock._writer or lock._writers_waiting:
                lock._cond.wait()
            lock._readers += 1

    def __exit__(self, *exc: object) -> None:
        lock = self._lock
        with lock._mutex:
            lock._readers -= 1
            if not lock._readers and lock._writers_waiting:
                lock._cond.notify_all()
