"""The registry of live collections and the catch-up that keeps them equal to the store.

Locks:
- ``apply_lock`` serialises every change to live state: a local write holds it from its
  store transaction through applying to the index, the catch-up holds it from reading the
  change feed through applying. So the index never receives an older state of a point
  after a newer one, whichever path brought each.
- ``_applied`` (a Condition) guards ``applied_seq``: every write with seq <= applied_seq
  is reflected in memory. ``wait_for_seq`` sleeps on it for read-your-writes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy.orm import Session

from app.engine.allowed import AllowedCache
from app.engine.clustering import Clustering
from app.engine.codes import Quantization
from app.engine.views import FilterViews
from app.service.errors import CollectionNotFound, NotReady
from app.service.indexes import IndexFactory, quantization_of
from app.service.live import LiveCollection
from app.service.snapshots import SnapshotDir
from app.store.collections import CollectionRecord, list_collections
from app.store.db import Store
from app.store.emulators import load_emulator, newest_emulator_version, written_since
from app.store.points import changes_since, get_labels, iter_live_points
from app.store.seq import current_seq
from app.store.versions import load_clustering, load_router

log = logging.getLogger(__name__)


class Registry:
    def __init__(
        self,
        store: Store,
        snapshots: SnapshotDir,
        filter_cache: AllowedCache,
        filter_views: FilterViews,
        indexes: IndexFactory | None = None,
    ) -> None:
        self.store = store
        self.indexes = indexes or IndexFactory()
        self.snapshots = snapshots
        self.filter_cache = filter_cache
        self.filter_views = filter_views
        self.apply_lock = threading.RLock()
        self._applied = threading.Condition()
        self.applied_seq = 0
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
            self.snapshots.remove_leftovers({r.name for r in records})
            for record in records:
                started = time.perf_counter()
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
                    live.index.upsert(change.upsert_ids, change.upsert_vectors)
                    live.index.remove(change.removed_ids)
        else:
            live = self._rebuild(record)
        clustering, quantization = self._sync_versions(live, record)
        if clustering is not None:  # the snapshot predates the active clustering
            live.index.set_clustering(clustering)
            self._sync_versions(live, record)  # now the router fits
        if quantization is not None:  # ... or the quantization
            self._requantize(live, quantization)
        return live

    def _rebuild(self, record: CollectionRecord) -> LiveCollection:
        with self.store.read() as session:
            clustering = (
                load_clustering(session, record.id, record.clustering_version)
                if record.clustering_version is not None
                else None
            )
            index = self.indexes.new(record, clustering)
            live = LiveCollection(
                record, index, filter_cache=self.filter_cache, filter_views=self.filter_views
            )
            for ids, vectors, _ in iter_live_points(session, record.id, record.dim):
                index.upsert(ids, vectors)
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
            if record.clustering_version != live.clustering_version:
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
        wanted_codes = quantization_of(record)
        requantize = wanted_codes if wanted_codes != live.index.quantization else None
        return swap, requantize

    def _swap_in(
        self, live: LiveCollection, clustering: Clustering | None, codes: Quantization | None
    ) -> None:
        """Re-assign ``live``'s vectors to a new clustering, then adopt its router; rebuild
        its lists with new codes.

        Writes (to this collection and all others) go on during the re-assignment; only its
        last step holds this collection's writers off (VectorIndex.set_clustering).
        """
        if clustering is not None:
            live.index.set_clustering(clustering)
            with self.apply_lock:
                if self._by_name.get(live.name) is live:
                    self._sync_versions(live, live.record)
        if codes is not None:
            self._requantize(live, codes)

    def _requantize(self, live: LiveCollection, codes: Quantization) -> None:
        """Rebuild with ``codes``; if that fails the current index keeps serving (logged)."""
        try:
            live.index.set_quantization(codes)
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
        staged = self.snapshots.stage(live.name, live.index, meta)
        with self.apply_lock:
            if self._by_name.get(live.name) is live:
                self.snapshots.publish(staged, live.name)
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
        """Apply every write committed by anyone since ``applied_seq``; returns the new head."""
        with self.store.read() as session:
            head = current_seq(session)
        if head <= self.applied_seq:
            return self.applied_seq
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
            self._advance(head)
        for live, clustering, codes in swaps:
            self._swap_in(live, clustering, codes)
        return head


def _sync_emulator(session: Session, live: LiveCollection, record: CollectionRecord) -> None:
    """Adopt the newest emulator version (under the apply lock, see ``set_emulator``)."""
    wanted = newest_emulator_version(session, record.id)
    held = live.emulator
    if wanted is not None and (held is None or held.version != wanted):
        emulator = load_emulator(session, record.id, wanted)
        live.set_emulator(emulator, written_since(session, record.id, emulator.trained_seq))
