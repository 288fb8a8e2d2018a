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
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

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
