"""A live collection: its store row, its in-memory index, its labels and active router."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.engine.ivf import SearchResult, VectorIndex
from app.engine.metric import Metric
from app.engine.routing import Router
from app.store.collections import CollectionRecord

Label = tuple[str, Any]  # (external id, payload)


@dataclass
class LiveCollection:
    """Mutated only under the registry's apply lock; read by searches without locks.

    Labels are added before a vector enters the index and dropped after it leaves, so
    every id a search returns has a label (dict reads and writes are atomic in CPython).
    """

    record: CollectionRecord
    index: VectorIndex
    labels: dict[int, Label] = field(default_factory=dict)
    router: Router | None = None  # the active learned router, if it fits the clustering
    changed_seq: int = 0  # newest write applied here (to skip unchanged snapshots)
    snapshot_seq: int = -1

    @classmethod
    def empty(cls, record: CollectionRecord) -> LiveCollection:
        return cls(record, VectorIndex(record.dim, Metric(record.metric)))

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def clustering_version(self) -> int | None:
        c = self.index.clustering
        return c.version if c is not None else None

    def apply_upsert(self, ids: np.ndarray, vectors: np.ndarray, labels: Sequence[Label]) -> None:
        for pid, label in zip(ids.tolist(), labels, strict=True):
            self.labels[pid] = label
        self.index.upsert(ids, vectors)

    def apply_remove(self, ids: np.ndarray) -> None:
        self.index.remove(ids)
        for pid in ids.tolist():
            self.labels.pop(pid, None)

    def set_router(self, router: Router | None) -> None:
        """Keep a learned router only while it was trained for the current clustering."""
        if router is not None and router.clustering_version != self.clustering_version:
            router = None
        self.router = router

    def hits(self, result: SearchResult, row: int, with_payload: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        labels = self.labels
        for pid, score in zip(result.ids[row].tolist(), result.scores[row].tolist(), strict=True):
            if pid < 0:
                break
            label = labels.get(pid)
            if label is None:  # removed between the scan and now
                continue
            hit: dict[str, Any] = {"id": label[0], "score": score}
            if with_payload:
                hit["payload"] = label[1]
            out.append(hit)
        return out
