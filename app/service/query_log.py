"""Buffered query logging: searches append in memory, a thread writes batches to the store.

A search must not wait for a store write, so logging is best-effort: if the store falls
behind, the oldest buffered queries are dropped (and counted) rather than growing memory.

``flush`` is a barrier: flushes are serialised by ``_flushing``, so when a flush returns,
every query added before it was called is in the store (a background flush that had
already taken some of them has finished writing them). ``train-router`` relies on it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque

import numpy as np

from app.store.db import Store
from app.store.outage import OutageLog, is_outage
from app.store.query_log import LoggedQuery, append_queries

log = logging.getLogger(__name__)


class QueryLogBuffer:
    def __init__(self, store: Store, *, max_buffer: int, flush_s: float) -> None:
        self.store = store
        self.flush_s = flush_s
        self.max_buffer = max_buffer
        self._buffer: deque[LoggedQuery] = deque(maxlen=max_buffer)
        # A batch the store could not take, oldest first: written before the buffer next
        # time. Kept apart from the bounded deque, where re-queueing would evict the newest.
        self._held: list[LoggedQuery] = []
        self._flushing = threading.Lock()
        self._outage = OutageLog(log, "query log flush")
        self.dropped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, collection_id: int, vectors: np.ndarray, k: int) -> None:
        """Buffer the rows of ``vectors`` (copied: the caller may reuse its array)."""
        buffer = self._buffer
        self.dropped += max(0, len(buffer) + len(vectors) - self.max_buffer)  # the oldest
        buffer.extend([LoggedQuery(collection_id, v, k) for v in vectors.copy()])

    @property
    def pending(self) -> int:
        """Queries buffered, not yet written to the store."""
        return len(self._buffer) + len(self._held)

    def flush(self) -> int:
        """Store every query added before this call; returns how many this call wrote.

        Raises the store's error when it fails: on an outage the batch is held for the next
        flush (within the buffer's bound, the oldest dropped first); any other error drops
        it. Every dropped query is counted in ``dropped``.
        """
        with self._flushing:
            batch = self._held + self._drain()
            self._held = []
            if not batch:
                return 0
            try:
                # Queries of a collection deleted since their search are left out there.
                append_queries(self.store, batch)
            except Exception as exc:
                self._outage.failed(exc)
                if is_outage(exc):
                    self._held = batch[-self.max_buffer :]
                self.dropped += len(batch) - len(self._held)
                raise
            self._outage.succeeded()
            return len(batch)

    def _drain(self) -> list[LoggedQuery]:
        batch: list[LoggedQuery] = []
        while True:
            try:
                batch.append(self._buffer.popleft())
            except IndexError:
                return batch

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="query-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._flush_logged()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self._flush_logged()

    def _flush_logged(self) -> None:
        """A background flush: its error is already logged (and counted) by ``flush``."""
        with contextlib.suppress(Exception):
            self.flush()
