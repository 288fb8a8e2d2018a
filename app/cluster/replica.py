"""A shard replica: one shard's lists, loaded from the SQL store (or the shard's snapshot)
and kept up from its change sequence, exactly as an API replica catches up
(``app/service/registry.py``).

It reads only its own lists: the store labels every point with its list
(``app/store/point_lists.py``), so loading reads the rows of its lists and catching up
reads the vectors of changed rows that land in them (ids only for the rest). Nothing in a
replica is trusted only in its memory: it is built from the store when it starts (a
restarted actor runs this constructor again) and follows the store's write sequence, so a
lost replica is rebuilt by starting it again. A shard snapshot, written every
``snapshot_interval_s`` when ``snapshot_dir`` is set, is only a faster start: the replica
loads it and catches up from the seq it reflects. Plain Python: Ray runs it as an actor
(``shard_set.py``), the tests also run it in-process.

Threads: Ray calls ``search`` and ``info`` from its own threads (the actor's concurrency
group); a daemon thread runs ``catch_up`` every ``catchup_interval_s`` and writes the
snapshots. ``_apply`` (a mutex) serialises catching up, so changes land in sequence order;
``_applied`` (a Condition) guards ``applied_seq`` for ``min_seq`` waits. The index has its
own locks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.cluster.shard import ShardHits, ShardIndex
from app.cluster.shard_snapshots import load_shard, save_shard
from app.engine.codes import Quantization
from app.engine.exact import ExactStorage
from app.engine.ivf import VectorIndex
from app.engine.metric import Metric
from app.heap import release_free_memory
from app.store.codebooks import load_codes
from app.store.db import Store
from app.store.point_lists import ListsOf, iter_shard_points, list_sizes, shard_changes_since
from app.store.seq import current_seq
from app.store.versions import load_clustering

log = logging.getLogger(__name__)


class StaleRead(RuntimeError):
    """The replica could not catch up to the sequence the caller must read."""


@dataclass(frozen=True)
class ShardCodes:
    """What a collection's lists hold, as its record says: a new value rebuilds its shards."""

    quantization: dict[str, Any] | None = None
    catalyzer_version: int | None = None


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
    snapshot_dir: str | None = None  # where this node keeps shard snapshots (None: none)
    snapshot_interval_s: float = 60.0
    # What the lists hold (the collection's quantization object, None: float32) and the
    # catalyzer version of a catalyzer kind; its codebook (or catalyzer) is read from the
    # store, so every replica codes alike. Exact vectors of code lists: ``ExactStorage``.
    quantization: dict[str, Any] | None = None
    catalyzer_version: int | None = None
    exact_storage: str = ExactStorage.FLOAT32.value
    exact_dir: str | None = None

    @property
    def described_codes(self) -> Quantization:
        """The codes asked for, as described (no codebook or catalyzer attached)."""
        return Quantization.parse(self.quantization, self.dim)

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
        self.snapshot_seq = -1  # the seq of the newest snapshot written or loaded here
        self.shard, self.source = self._load()
        if self.source == "snapshot":
            self.catch_up()
        release_free_memory()  # what reading the points or the snapshot left in the heap
        self.load_seconds = time.perf_counter() - started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="catch-up", daemon=True)
        self._thread.start()

    def _load(self) -> tuple[ShardIndex, str]:
        """The shard's lists and where they came from: its snapshot (then the caller
        catches up from the snapshot's seq) or the store."""
        spec = self.spec
        metric, lists = Metric(spec.metric), np.array(spec.lists)
        snap = None
        storage, exact_dir = ExactStorage(spec.exact_storage), _path(spec.exact_dir)
        if spec.snapshot_dir is not None:
            snap = load_shard(Path(spec.snapshot_dir), spec.part, spec.dim, storage, exact_dir)
        if snap is not None and not _holds(snap[0], spec):
            snap = None  # of other codes (the quantization changed since): from the store
        if snap is not None:
            index, seq = snap
            assert index.clustering is not None  # load_shard checked its version
            self.snapshot_seq = seq
            self._advance(seq)
            return ShardIndex(spec.dim, metric, index.clustering, lists, index), "snapshot"
        with self._apply, self._store.read() as session:
            head = current_seq(session)  # first: every write up to it is visible below
            clustering = load_clustering(session, spec.collection_id, spec.clustering_version)
            codes = load_codes(
                session,
                spec.collection_id,
                spec.described_codes,
                spec.catalyzer_version,
                spec.clustering_version,
            )
            shard = ShardIndex(
                spec.dim,
                metric,
                clustering,
                lists,
                codes=codes,
                exact_storage=storage,
                exact_dir=exact_dir,
            )
            # Each list sized once, for the points labelled for it (placing a clustering
            # labels every row first; rows written meanwhile are few).
            cid, version = spec.collection_id, spec.clustering_version
            shard.reserve(list_sizes(session, cid, version, clustering.nlist))
            for ids, vectors, labels in iter_shard_points(session, spec.part, spec.dim):
                self.vectors_read += len(ids)
                shard.upsert(ids, vectors, labels)
            self._advance(head)
        if codes.compressed and not shard.index.coded:
            # No stored codebook fits (data older than stored codebooks): the lists were
            # filled as float32; code them now with codebooks of their own.
            shard.index.set_quantization(codes)
        return shard, "store"

    def _follow(self) -> None:
        last_snapshot = time.monotonic()
        while not self._stop.wait(self.spec.catchup_interval_s):
            try:
                self.catch_up()
            except Exception:  # the store is away: the next round retries; min_seq waits tell
                log.exception("shard catch-up failed", extra={"shard": self.spec.shard})
            if time.monotonic() - last_snapshot >= self.spec.snapshot_interval_s:
                last_snapshot = time.monotonic()
                self.snapshot()

    def snapshot(self) -> bool:
        """Write the shard's snapshot if writes were applied since the last; whether it did."""
        spec = self.spec
        seq = self.applied_seq  # read first: the index holds at least this
        if spec.snapshot_dir is None or seq <= self.snapshot_seq:
            return False
        try:
            save_shard(Path(spec.snapshot_dir), spec.part, self.shard.index, seq)
        except OSError:  # a full or read-only disk costs only the faster start
            log.exception("shard snapshot failed", extra={"shard": spec.shard})
            return False
        finally:
            release_free_memory()  # the copy of the index the snapshot was written from
        self.snapshot_seq = seq
        return True

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
            self.shard.upsert(changes.upsert_ids, changes.upsert_vectors, changes.upsert_lists)
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
        rerank: int | None = None,
        exact: bool = False,
        timeout_s: float = 2.0,
    ) -> ShardHits:
        """The shard's top-``k`` for the coordinator's probes, once every write up to
        ``min_seq`` is applied here (read-your-writes across shards); code lists re-rank
        their best ``rerank`` exactly (``ShardIndex.search``)."""
        if min_seq > self.applied_seq:
            self.catch_up()
            with self._applied:
                if not self._applied.wait_for(lambda: self.applied_seq >= min_seq, timeout_s):
                    raise StaleRead(f"shard {self.spec.shard} has not reached seq {min_seq}")
        return self.shard.search(queries, k, probes, allowed, rerank, exact)

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
            "source": self.source,
            "snapshot_seq": self.snapshot_seq,
            "vectors_read": self.vectors_read,
            "memory_bytes": self.shard.index.memory_bytes(),
            "quantization": self.shard.index.quantization.to_dict(),
            "coded": self.shard.index.coded,
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._store.dispose()


def _path(value: str | None) -> Path | None:
    return Path(value) if value is not None else None


def _holds(index: VectorIndex, spec: ShardSpec) -> bool:
    """A loaded shard snapshot holds the codes ``spec`` asks for (description, catalyzer)."""
    held = index.quantization
    wanted = spec.described_codes
    if held.to_dict() != wanted.to_dict():
        return False
    return not wanted.compressed or held.catalyzer_version == spec.catalyzer_version
