"""A live collection: its store row, its in-memory index, its labels and active router.

The index holds the vectors (``VectorIndex``), except for a collection its shards serve
(cluster mode): then it is a ``RoutingIndex`` (each point's list, no vector), replaced
whole by the registry when the shards serve another clustering.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.engine.adaptive import AdaptiveCalibration
from app.engine.allowed import AllowedCache
from app.engine.codes import Quantization
from app.engine.emulator import Emulator
from app.engine.ivf import Assignment, SearchResult, VectorIndex
from app.engine.payload_index import PayloadIndex
from app.engine.recall_table import code_stamp
from app.engine.routing import Router
from app.engine.routing_index import RoutingIndex
from app.engine.views import FilterViews
from app.service.errors import ShardDown
from app.store.collections import CollectionRecord

Label = tuple[str, Any]  # (external id, payload)


@dataclass
class LiveCollection:
    """Mutated only under the registry's apply lock; read by searches without locks.

    Labels are added before a vector enters the index and dropped after it leaves, so
    every id a search returns has a label (dict reads and writes are atomic in CPython).
    The payload index follows the same order: a filter never lets through an id that has
    no label, and may at most allow one whose vector is not in the index yet.
    """

    record: CollectionRecord
    index: VectorIndex | RoutingIndex
    labels: dict[int, Label] = field(default_factory=dict)
    payloads: PayloadIndex = field(default_factory=PayloadIndex)
    router: Router | None = None  # the active learned router, if it fits the clustering
    # The active router's adaptive calibration, parsed once per router and record; one
    # tuple, so a search never pairs a router with another router's calibration.
    _adaptive: tuple[Router | None, CollectionRecord | None, AdaptiveCalibration | None] = (
        None,
        None,
        None,
    )
    # ``code_stamp`` of a record, worked out once per record (the catch-up replaces it).
    _stamp: tuple[CollectionRecord | None, dict[str, Any] | None] = (None, None)
    # Paper 002's emulator (newest version) and the ids written since its training seq,
    # which it never saw: searched exactly beside its proposals. ``_fresh_lock`` guards the
    # set (writers add, searches copy); the pair is replaced as one tuple.
    _emulator: tuple[Emulator | None, set[int]] = field(default_factory=lambda: (None, set()))
    _fresh_lock: threading.Lock = field(default_factory=threading.Lock)
    changed_seq: int = 0  # newest write applied here (to skip unchanged snapshots)
    snapshot_seq: int = -1
    # Shared by the process's collections: filter bitmaps, copies of matching vectors.
    filter_cache: AllowedCache | None = None
    filter_views: FilterViews | None = None

    @classmethod
    def empty(
        cls,
        record: CollectionRecord,
        index: VectorIndex,
        filter_cache: AllowedCache | None = None,
        filter_views: FilterViews | None = None,
    ) -> LiveCollection:
        return cls(
            record,
            index,
            payloads=PayloadIndex(record.payload_indexes, filter_cache),
            filter_cache=filter_cache,
            filter_views=filter_views,
        )

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def vector_index(self) -> VectorIndex:
        """The index holding the vectors; a collection its shards serve has none here (a
        search that planned on the vectors just before the registry let them go retries)."""
        index = self.index
        if not isinstance(index, VectorIndex):
            raise ShardDown(f"collection {self.name!r} is served by its shards now: retry")
        return index

    @property
    def clustering_version(self) -> int | None:
        c = self.index.clustering
        return c.version if c is not None else None

    def apply_upsert(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        labels: Sequence[Label],
        assigned: Assignment | None = None,
    ) -> None:
        """Index a batch; ``assigned``: its lists as computed for the store (``lists_of``)."""
        pids = ids.tolist()
        for pid, label in zip(pids, labels, strict=True):
            self.labels[pid] = label
        self.payloads.upsert(pids, [payload for _, payload in labels])
        emulator, fresh = self._emulator
        if emulator is not None:
            with self._fresh_lock:
                fresh.update(pids)
        self.index.upsert(ids, vectors, assigned)

    def apply_remove(self, ids: np.ndarray) -> None:
        self.index.remove(ids)
        pids = ids.tolist()
        _, fresh = self._emulator
        with self._fresh_lock:
            fresh.difference_update(pids)
        self.payloads.remove(pids)
        for pid in pids:
            self.labels.pop(pid, None)

    def load_labels(self, labels: dict[int, Label]) -> None:
        """Adopt every live point's label at start-up, and index their payloads."""
        self.labels = labels
        self.payloads = self._payload_index(self.record.payload_indexes)

    def declare_payload_indexes(self, fields: dict[str, str]) -> None:
        """Rebuild the payload index if the declared fields changed (under the apply lock)."""
        if fields != self.payloads.fields:
            self.payloads = self._payload_index(fields)
            if self.filter_views is not None:
                self.filter_views.forget(self.index)

    def _payload_index(self, fields: dict[str, str]) -> PayloadIndex:
        return PayloadIndex.build(
            fields,
            ((pid, lab[1]) for pid, lab in self.labels.items()),
            self.filter_cache,
        )

    def set_router(self, router: Router | None) -> None:
        """Keep a learned router only while it was trained for the current clustering."""
        if router is not None and router.clustering_version != self.clustering_version:
            router = None
        self.router = router

    @property
    def emulator(self) -> Emulator | None:
        return self._emulator[0]

    def set_emulator(self, emulator: Emulator, written_since: np.ndarray) -> None:
        """Serve ``emulator``; ``written_since``: live ids written after its training seq
        (under the apply lock, so every later write adds itself)."""
        self._emulator = (emulator, set(written_since.tolist()))

    def emulator_state(self) -> tuple[Emulator | None, np.ndarray]:
        """The emulator and a copy of the ids it never saw, taken together."""
        emulator, fresh = self._emulator
        with self._fresh_lock:
            ids = np.fromiter(fresh, dtype=np.int64, count=len(fresh))
        return emulator, ids

    def adaptive_for(self, router: Router) -> AdaptiveCalibration | None:
        """``router``'s calibration for target_recall, if one was measured on the lists the
        collection holds now (codes lose recall a calibration of others ignores). Every
        router training calibrates the serving router afresh into the collection's recall
        table; a router no table describes serves the calibration its training stored."""
        record = self.record
        held_router, held_record, calibration = self._adaptive
        if held_router is not router or held_record is not record:
            table = record.recall_table or {}
            stored = router.params.get("adaptive")
            if table.get("router_version") == router.version and table.get("adaptive"):
                stored = table["adaptive"]
            calibration = AdaptiveCalibration.from_dict(stored) if stored else None
            self._adaptive = (router, record, calibration)
        if calibration is None or calibration.codes != self.code_stamp():
            return None
        return calibration

    def code_stamp(self) -> dict[str, Any] | None:
        """``recall_table.code_stamp`` of the codes the record asks for: what a recall table
        or calibration must have been measured on to serve target_recall here."""
        record = self.record
        held, stamp = self._stamp
        if held is not record:
            codes = Quantization.parse(record.quantization, record.dim)
            stamp = code_stamp(codes, record.catalyzer_version)
            self._stamp = (record, stamp)
        return stamp

    def hits(self, result: SearchResult, with_payload: bool) -> list[list[dict[str, Any]]]:
        """Each query's hits, best first: the ids of -1 (fewer than k found) and of points
        removed between the scan and now have no label and are left out. Few numpy calls
        and one comprehension per query: every search builds these on caches its scan has
        just flushed."""
        get = self.labels.get
        rows = zip(result.ids.tolist(), result.scores.tolist(), strict=True)
        if with_payload:
            return [
                [
                    {"id": label[0], "score": score, "payload": label[1]}
                    for label, score in zip(map(get, ids), scores, strict=True)
                    if label is not None
                ]
                for ids, scores in rows
            ]
        return [
            [
                {"id": label[0], "score": score}
                for label, score in zip(map(get, ids), scores, strict=True)
                if label is not None
            ]
            for ids, scores in rows
        ]
