"""The service's background work: loading the indexes, catching up with the store, writing
snapshots, flushing the query log and, when embedded, the worker.

Threads (all daemons, stopped by ``stop``): the initial load, which then becomes the
catch-up loop; the snapshot loop; the query-log flusher; the worker's own threads.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from app.heap import release_free_memory
from app.service.query_log import QueryLogBuffer
from app.service.registry import Registry
from app.settings import Settings
from app.store.db import Store
from app.store.migrate import upgrade
from app.store.outage import OutageLog

log = logging.getLogger(__name__)


class EmbeddedWorker(Protocol):
    """What the service needs of a worker running in its process (``worker.worker.Worker``)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def wake(self) -> None: ...
    def add_job_listener(self, listener: Callable[[str, str, float], None]) -> None: ...


class Runtime:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: Registry,
        query_log: QueryLogBuffer,
        worker: EmbeddedWorker | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.query_log = query_log
        self.worker = worker
        self.load_error: BaseException | None = None
        self.loaded = threading.Event()  # set once loading has succeeded or failed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Migrate, then load indexes in the background (``/readyz`` says when done)."""
        upgrade(self.store)
        self._spawn("load", self._load_then_loop)
        self.query_log.start()
        if self.worker is not None:
            self.worker.start()

    def stop(self) -> None:
        self._stop.set()
        self.registry.wake.set()
        if self.worker is not None:
            self.worker.stop()
        for t in self._threads:
            t.join(timeout=30)
        self.query_log.stop()
        self.registry.filter_views.close()
        if self.registry.ready:
            self.snapshot_all(force=False)
        self.store.dispose()
        gc.unfreeze()  # what died since can be collected (tests run many services)

    def _spawn(self, name: str, target: Any) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _load_then_loop(self) -> None:
        try:
            self.registry.load_all()
            # Start-up objects (modules, loaded labels) live as long as the process. Frozen,
            # a full collection no longer walks them: measured 100-250 ms holding the GIL,
            # triggered by an ingest's allocations, against ~20 ms after (issue 7).
            gc.collect()
            gc.freeze()
            release_free_memory()  # what reading the collections left in the heap
        except BaseException as exc:
            self.load_error = exc
            log.exception("loading indexes failed")
            return
        finally:
            self.loaded.set()
        self._spawn("snapshots", self._snapshot_loop)
        interval = self.settings.catchup_interval_s
        outage = OutageLog(log, "catch-up")
        while not self._stop.is_set():
            self.registry.wake.wait(interval)
            self.registry.wake.clear()
            if self._stop.is_set():
                break
            with outage.attempt():
                self.registry.catch_up()

    def _snapshot_loop(self) -> None:
        while not self._stop.wait(self.settings.snapshot_interval_s):
            try:
                self.snapshot_all(force=False)
            except Exception:
                log.exception("snapshot failed")

    def snapshot_all(self, *, force: bool) -> int:
        """Write snapshots of changed collections; returns how many were written."""
        written = 0
        for live in self.registry.all():
            if not force and live.snapshot_seq >= live.changed_seq:
                continue
            seq = self.registry.applied_seq  # read first: the index holds at least this
            meta = {
                "collection_id": live.record.id,
                "seq": seq,
                "clustering_version": live.clustering_version,
            }
            if self.registry.save_snapshot(live, meta):
                live.snapshot_seq = max(live.changed_seq, seq)
                written += 1
        return written

    @property
    def load_failure(self) -> str | None:
        """Why loading the indexes failed (the process will not become ready), or None."""
        exc = self.load_error
        return None if exc is None else f"{type(exc).__name__}: {exc}"
