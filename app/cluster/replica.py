"""A shard replica: one shard's lists, loaded from the SQL store and kept up from its change
sequence, exactly as an API replica catches up (``app/service/registry.py``).

Nothing in a replica is trusted only in its memory: it is built from the store when it
starts (a restarted actor runs this constructor again) and follows the store's write
sequence, so a lost replica is rebuilt by starting it again. Plain Python: Ray runs it as
an actor (``actors.py``), the tests also run it in-process.

Threads: Ray calls ``search`` and ``info`` from its own threads (the actor's concurrency
group); a daemon thread runs ``catch_up`` every ``catchup_interval_s``. ``_apply`` (a
mutex) serialises catching up, so changes land in sequence order; ``_applied`` (a
Condition) guards ``applied_seq`` for ``min_seq`` waits. The index has its own locks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.cluster.shard import ShardHits, ShardIndex
from app.engine.metric import Metric
from app.store.db import Store
from app.store.point_lists import ListsOf, iter_shard_points, shard_changes_since
from app.store.seq import current_seq
from app.store.versions import load_clustering

log = logging.getLogger(__name__)


class StaleRead(RuntimeError):
    """The replica could not catch up to the sequence the caller must read."""


@dataclass(frozen=True)
class ShardSpec:
    """Everything a replica needs to build itself from the store: picklable, no handles."""

    database_url: str
    collection_id: int
    dim: int
    metric: str
    clustering_version: int
    shard: int
    lists: tuple[int, ...]
    epoch: int = 0
    catchup_interval_s: float = 0.2

    @property
    def part(self) -> ListsOf:
        """What this shard reads of the store: its lists of its clustering."""
        return ListsOf(self.collection_id, self.clustering_version, self.lists)


class ShardReplica:
    def __init__(self, spec: ShardSpec, node_id: str = "") -> None:
        self.spec = spec
        self.node_id = node_id
        started = time.perf_counter()
        self._store = Store(spec.database_url)
        self._apply = threading.Lock()
        self._applied = threading.Condition()
        self.applied_seq = 0
        self.vectors_read = 0  # point vectors read from the store, loading and catching up
        self.shard = self._load()
        self.load_seconds = time.perf_counter() - started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="catch-up", daemon=True)
        self._thread.start()

    def _load(self) -> ShardIndex:
        spec = self.spec
        with self._apply, self._store.read() as session:
            head = current_seq(session)  # first: every write up to it is visible below
            clustering = load_clustering(session, spec.collection_id, spec.clustering_version)
            shard = ShardIndex(spec.dim, Metric(spec.metric), clustering, np.array(spec.lists))
            for ids, vectors in iter_shard_points(session, spec.part, spec.dim):
                self.vectors_read += len(ids)
                shard.upsert(ids, vectors)
            self._advance(head)
        return shard

    def _follow(self) -> None:
        while not self._stop.wait(self.spec.catchup_interval_s):
            try:
                self.catch_up()
            except Exception:  # the store is away: the next round retries; min_seq waits tell
                log.exception("shard catch-up failed", extra={"shard": self.spec.shard})

    def catch_up(self) -> int:
        """Apply every write committed since ``applied_seq``; returns the new head."""
        spec = self.spec
        with self._apply:
            with self._store.read() as session:
                head = current_seq(session)
                if head <= self.applied_seq:
                    return self.applied_seq
                changes = shard_changes_since(session, self.applied_seq, spec.part, spec.dim)
            self.vectors_read += len(changes.upsert_ids)
            self.shard.upsert(changes.upsert_ids, changes.upsert_vectors)
            self.shard.remove(changes.removed_ids)
            self._advance(head)
            return head

    def _advance(self, seq: int) -> None:
        with self._applied:
            self.applied_seq = max(self.applied_seq, seq)
            self._applied.notify_all()

    def search(
        self,
        queries: np.ndarray,
        k: int,
        probes: np.ndarray,
        allowed: np.ndarray | None = None,
        min_seq: int = 0,
        timeout_s: float = 2.0,
    ) -> ShardHits:
        """The shard's top-``k`` for the coordinator's probes, once every write up to
        ``min_seq`` is applied here (read-your-writes across shards)."""
        if min_seq > self.applied_seq:
            self.catch_up()
            with self._applied:
                if not self._applied.wait_for(lambda: self.applied_seq >= min_seq, timeout_s):
                    raise StaleRead(f"shard {self.spec.shard} has not reached seq {min_seq}")
        return self.shard.search(queries, k, probes, allowed)

    def info(self) -> dict[str, Any]:
        """Where this replica runs and what it holds (collection info, health checks)."""
        return {
            "shard": self.spec.shard,
            "epoch": self.spec.epoch,
            "node": self.node_id,
            "pid": os.getpid(),
            "points": self.shard.count,
            "lists": len(self.shard.lists),
            "applied_seq": self.applied_seq,
            "load_seconds": round(self.load_seconds, 3),
            "vectors_read": self.vectors_read,
            "memory_bytes": self.shard.index.memory_bytes(),
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._store.dispose()
