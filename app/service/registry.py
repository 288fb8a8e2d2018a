"""The registry of live collections and the catch-up that keeps them equal to the store.

Locks:
- ``apply_lock`` serialises every change to live state: a local write holds it from its
  store transaction through applying to the index, the catch-up holds it from reading the
  change feed through applying. So the index never receives an older state of a point
  after a newer one, whichever path brought each.
- ``_applied`` (a Condition) guards ``applied_seq``: every write with seq <= applied_seq
  is reflected in memory. ``wait_for_seq`` sleeps on it for read-your-writes.
- ``_swapping`` (a Condition) counts the clustering and codes swaps an applier has taken
  on (under ``apply_lock``, before advancing ``applied_seq``) and not yet finished; they
  run outside the apply lock, so ``catch_up`` waits on it before saying all is applied.

Sharded collections (cluster mode, ``shards`` given): once its shards serve a clustering,
a collection (float lists or codes) is held here as a ``RoutingIndex`` of that clustering
(each point's list from the store's labels, no vector, no code), which follows the
shards, not the record: it is rebuilt from the store when they serve a new clustering, so
this process routes with the clustering the shards hold, and says which codes they hold.
A process starting with a sharded collection that has a clustering loads it so at once
(its searches wait for the shards: 503). Until the first placement the collection is
held whole, as without a cluster. A routing-only index is snapshotted as its ids and
lists; without a snapshot the store's labels rebuild it (reading the vectors only of rows
not labelled).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from sqlalchemy.orm import Session

from app.engine.allowed import AllowedCache
from app.engine.clustering import Clustering
from app.engine.codes import Quantization
from app.engine.ivf import VectorIndex
from app.engine.routing_index import RoutingIndex
from app.engine.views import FilterViews
from app.heap import release_free_memory
from app.service.errors import CollectionNotFound, NotReady
from app.service.indexes import (
    IndexFactory,
    routing_index,
    stored_codes,
    wanted_codes,
)
from app.service.live import LiveCollection
from app.service.snapshots import SnapshotDir
from app.store.collections import CollectionRecord, list_collections
from app.store.db import Store
from app.store.emulators import load_emulator, newest_emulator_version, written_since
from app.store.placements import requested_shards
from app.store.points import changes_since, get_labels, read_live_points
from app.store.seq import current_seq
from app.store.versions import load_clustering, load_router

log = logging.getLogger(__name__)


class ServedClusterings(Protocol):
    """What the registry needs of the cluster coordinator (``app/cluster/coordinator.py``)."""

    def serving_clustering(self, collection_id: int) -> Clustering | None: ...

    def serving_codes(self, collection_id: int) -> dict[str, Any] | None: ...


class Registry:
    def __init__(
        self,
        store: Store,
        snapshots: SnapshotDir,
        filter_cache: AllowedCache,
        filter_views: FilterViews,
        indexes: IndexFactory | None = None,
        shards: ServedClusterings | None = None,
    ) -> None:
        """``shards``: the coordinator of sharded collections (cluster mode), else None."""
        self.store = store
        self.shards = shards
        self.indexes = indexes or IndexFactory()
        self.snapshots = snapshots
        self.filter_cache = filter_cache
        self.filter_views = filter_views
        self.apply_lock = threading.RLock()
        self._applied = threading.Condition()
        self.applied_seq = 0
        self._swapping = threading.Condition()
        self._swaps_running = 0
        self._by_name: dict[str, LiveCollection] = {}
        self.ready = False
        self.wake = threading.Event()

    # -- reading --------------------------------------------------------------------------

    def get(self, name: str) -> LiveCollection:
        if not self.ready:
            raise NotReady("indexes are still loading")
        live = self._by_name.get(name)
        if live is None:
            raise CollectionNotFound(f"collection {name!r} does not exist")
        return live

    def all(self) -> list[LiveCollection]:
        if not self.ready:
            raise NotReady("indexes are still loading")
        return sorted(self._by_name.values(), key=lambda c: c.name)

    def wait_for_seq(self, seq: int, timeout_s: float) -> bool:
        """Block until every write up to ``seq`` is applied here; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._applied:
            while self.applied_seq < seq:
                self.wake.set()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._applied.wait(min(left, 0.05))
        return True

    # -- start-up -------------------------------------------------------------------------

    def load_all(self) -> None:
        """Load every collection (snapshot + change feed, or a rebuild), then mark ready."""
        with self.apply_lock:
            with self.store.read() as session:
                head = current_seq(session)
                records = list_collections(session)
                sharded = requested_shards(session) if self.shards is not None else {}
            self.snapshots.remove_leftovers({r.name for r in records})
            for record in records:
                started = time.perf_counter()
                if record.id in sharded and _routable(record):
                    self._by_name[record.name] = self._load_routing(record)
                else:
                    self._by_name[record.name] = self._load(record)
                log.info(
                    "collection loaded",
                    extra={"collection": record.name, "seconds": time.perf_counter() - started},
                )
            self._advance(head)
        self.ready = True

    def _load(self, record: CollectionRecord) -> LiveCollection:
        snap = self.snapshots.load(record, self.indexes)
        if snap is not None:
            index, seq = snap
            live = LiveCollection(
                record, index, filter_cache=self.filter_cache, filter_views=self.filter_views
            )
            with self.store.read() as session:
                live.load_labels(get_labels(session, record.id))
                for change in changes_since(session, seq, {record.id: record.dim}, record.id):
                    index.upsert(change.upsert_ids, change.upsert_vectors)
                    index.remove(change.removed_ids)
        else:
            live = self._rebuild(record)
        clustering, quantization = self._sync_versions(live, record)
        if clustering is not None:  # the snapshot predates the active clustering (and codes)
            live.vector_index.set_clustering(clustering, quantization)
            self._sync_versions(live, record)  # now the router fits
        elif quantization is not None:  # ... or the quantization
            self._requantize(live, quantization)
        return live

    def _load_routing(self, record: CollectionRecord) -> LiveCollection:
        """A sharded collection with a clustering, without its vectors (see the module)."""
        assert record.clustering_version is not None
        with self.store.read() as session:
            clustering = load_clustering(session, record.id, record.clustering_version)
        snap = self.snapshots.load_routing(record, clustering)
        with self.store.read() as session:
            if snap is None:
                index = routing_index(session, record, clustering)
            else:
                index, seq = snap
                for change in changes_since(session, seq, {record.id: record.dim}, record.id):
                    index.upsert(change.upsert_ids, change.upsert_vectors)
                    index.remove(change.removed_ids)
            live = LiveCollection(
                record, index, filter_cache=self.filter_cache, filter_views=self.filter_views
            )
            live.load_labels(get_labels(session, record.id))
        self._sync_versions(live, record)
        return live

    def _rebuild(self, record: CollectionRecord) -> LiveCollection:
        with self.store.read() as session:
            clustering = (
                load_clustering(session, record.id, record.clustering_version)
                if record.clustering_version is not None
                else None
            )
            index = self.indexes.new(record, clustering, stored_codes(session, record))
            live = LiveCollection(
                record, index, filter_cache=self.filter_cache, filter_views=self.filter_views
            )
            index.load(*read_live_points(session, record.id, record.dim))
            live.load_labels(get_labels(session, record.id))
        return live

    def _sync_versions(
        self, live: LiveCollection, record: CollectionRecord
    ) -> tuple[Clustering | None, Quantization | None]:
        """Adopt the record's router and payload indexes; returns its clustering and its
        quantization where the index holds others, for ``_swap_in`` (outside the apply lock
        when serving)."""
        live.record = record
        live.declare_payload_indexes(record.payload_indexes)
        with self.store.read() as session:
            swap = None
            whole = live.index.holds_vectors  # a routing index follows the shards instead
            if whole and record.clustering_version != live.clustering_version:
                assert record.clustering_version is not None  # a clustering is never withdrawn
                swap = load_clustering(session, record.id, record.clustering_version)
            wanted = record.router_version
            current = live.router.version if live.router is not None else None
            if wanted != current:
                router = load_router(session, record.id, wanted) if wanted is not None else None
                live.set_router(router)  # kept only once the clustering it fits is swapped in
            elif live.router is not None:
                live.set_router(live.router)
            _sync_emulator(session, live, record)
            requantize = wanted_codes(session, record, live.index.quantization) if whole else None
        return swap, requantize

    def _swap_in(
        self, live: LiveCollection, clustering: Clustering | None, codes: Quantization | None
    ) -> None:
        """Re-assign ``live``'s vectors to a new clustering, then adopt its router; rebuild
        its lists with new codes.

        Writes (to this collection and all others) go on during the re-assignment; only its
        last step holds this collection's writers off (VectorIndex.set_clustering).
        """
        index = live.index
        if not isinstance(index, VectorIndex):  # made routing-only meanwhile
            return
        if clustering is not None:  # with the codes (e.g. its stored codebook) in one rebuild
            index.set_clustering(clustering, codes)
            with self.apply_lock:
                if self._by_name.get(live.name) is live:
                    self._sync_versions(live, live.record)
        elif codes is not None:
            self._requantize(live, codes)
        release_free_memory()  # the index swapped out, and the copies it was built from

    def _requantize(self, live: LiveCollection, codes: Quantization) -> None:
        """Rebuild with ``codes``; if that fails the current index keeps serving (logged)."""
        try:
            live.vector_index.set_quantization(codes)
        except Exception:
            log.exception(
                "rebuilding with new codes failed; the current index keeps serving",
                extra={"collection": live.name, "quantization": codes.to_dict()},
            )
            return

    # -- local changes ---------------------------------------------------------------------

    def add(self, live: LiveCollection) -> None:
        self._by_name[live.name] = live

    def drop(self, name: str) -> None:
        live = self._by_name.pop(name, None)
        if live is not None:
            self.filter_views.forget(live.index)
        self.snapshots.remove(name)

    def save_snapshot(self, live: LiveCollection, meta: dict[str, Any]) -> bool:
        """Snapshot ``live``; False if it was dropped meanwhile (then nothing is written).

        Serialising runs without the apply lock; only the rename into place takes it, and
        only while ``live`` is still registered: a snapshot of a dropped collection never
        reappears after ``drop`` removed it.
        """
        index = live.index
        try:
            staged = self.snapshots.stage(live.name, index, meta)
        finally:
            release_free_memory()  # the copy of the index the snapshot was written from
        with self.apply_lock:
            if self._by_name.get(live.name) is live:
                self.snapshots.publish(staged, live.name, index)
                return True
        staged.unlink(missing_ok=True)
        return False

    def note_local_write(self, seq: int) -> None:
        """A write applied in-process advances the watermark if it is the next number."""
        with self._applied:
            if seq == self.applied_seq + 1:
                self.applied_seq = seq
                self._applied.notify_all()

    def _advance(self, seq: int) -> None:
        with self._applied:
            if seq > self.applied_seq:
                self.applied_seq = seq
            self._applied.notify_all()

    # -- catch-up --------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply every write committed by anyone since ``applied_seq`` (with the swaps
        they bring, whichever thread runs them), then follow the clusterings the shards
        serve; returns the new head."""
        with self.store.read() as session:
            head = current_seq(session)
        if head > self.applied_seq:
            self._apply_changes()
        with self._swapping:
            self._swapping.wait_for(lambda: self._swaps_running == 0)
        if self.shards is not None:
            for live in list(self._by_name.values()):
                self._follow_shards(live, self.shards.serving_clustering(live.record.id))
        return self.applied_seq

    def _follow_shards(self, live: LiveCollection, serving: Clustering | None) -> None:
        """Hold ``live`` routing-only under the clustering its shards serve, saying what
        codes they hold (``RoutingIndex.quantization``: the lists that answer)."""
        if serving is None or not _routable(live.record):  # not sharded, or nothing placed
            return
        assert self.shards is not None
        codes = Quantization.parse(self.shards.serving_codes(live.record.id), live.record.dim)
        held = live.index
        serving_now = held.clustering is not None and held.clustering.version == serving.version
        if isinstance(held, RoutingIndex) and serving_now:
            held.quantization = codes  # routing-only under the clustering the shards serve
            return
        with self.apply_lock:
            if self._by_name.get(live.name) is not live:
                return
            with self.store.read() as session:
                index = routing_index(session, live.record, serving)
            index.quantization = codes
            self.filter_views.forget(live.index)
            live.index = index
            live.snapshot_seq = -1  # the file on disk is of the index replaced: rewrite
            self._sync_versions(live, live.record)  # the router of this clustering
            log.info(
                "collection held routing-only",
                extra={"collection": live.name, "clustering_version": serving.version},
            )

    def _apply_changes(self) -> None:
        with self.apply_lock:
            with self.store.read() as session:
                # The head is read first: every write up to it is committed, hence visible now.
                head = current_seq(session)
                records = {r.name: r for r in list_collections(session)}
                for name in list(self._by_name):
                    if name not in records or records[name].id != self._by_name[name].record.id:
                        self.drop(name)
                fresh = [r for n, r in records.items() if n not in self._by_name]
                dims = {live.record.id: live.record.dim for live in self._by_name.values()}
                changes = changes_since(session, self.applied_seq, dims)
            by_id = {live.record.id: live for live in self._by_name.values()}
            for change in changes:
                live = by_id[change.collection_id]
                live.changed_seq = head
                live.apply_upsert(change.upsert_ids, change.upsert_vectors, change.upsert_labels)
                live.apply_remove(change.removed_ids)
            swaps: list[tuple[LiveCollection, Clustering | None, Quantization | None]] = []
            for name, live in list(self._by_name.items()):
                if records[name].seq != live.record.seq:
                    clustering, codes = self._sync_versions(live, records[name])
                    if clustering is not None or codes is not None:
                        swaps.append((live, clustering, codes))
            for record in fresh:
                self._by_name[record.name] = self._rebuild(record)
            with self._swapping:
                self._swaps_running += len(swaps)
            self._advance(head)
        if fresh:
            release_free_memory()  # what reading their points left in the heap
        try:
            for live, clustering, codes in swaps:
                self._swap_in(live, clustering, codes)
        finally:
            with self._swapping:
                self._swaps_running -= len(swaps)
                self._swapping.notify_all()


def _routable(record: CollectionRecord) -> bool:
    """Whether the collection can be held routing-only once sharded: a clustering (its
    shards hold its lists, float or codes, and their exact vectors)."""
    return record.clustering_version is not None


def _sync_emulator(session: Session, live: LiveCollection, record: CollectionRecord) -> None:
    """Adopt the newest emulator version (under the apply lock, see ``set_emulator``)."""
    wanted = newest_emulator_version(session, record.id)
    held = live.emulator
    if wanted is not None and (held is None or held.version != wanted):
        emulator = load_emulator(session, record.id, wanted)
        live.set_emulator(emulator, written_since(session, record.id, emulator.trained_seq))
