"""Local index snapshots: a fast restart loads one instead of rebuilding from the store.

A snapshot is only an accelerator: its meta records the collection row it belongs to and
the write seq it reflects; anything that does not match falls back to a rebuild, and the
store's change feed brings a loaded snapshot up to date. A collection held routing-only
(its shards hold the vectors) is snapshotted as its ids and lists (``name.lists``).
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

from app.engine.clustering import Clustering
from app.engine.ivf import VectorIndex
from app.engine.routing_index import RoutingIndex, load_routing_snapshot, save_routing_snapshot
from app.engine.snapshot import SnapshotError, load_snapshot, save_snapshot
from app.service.indexes import IndexFactory
from app.store.collections import CollectionRecord

log = logging.getLogger(__name__)


class SnapshotDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / f"{name}.snap"

    def routing_path(self, name: str) -> Path:
        return self.root / f"{name}.lists"

    def stage(self, name: str, index: VectorIndex | RoutingIndex, meta: dict[str, Any]) -> Path:
        """Write a snapshot beside the published ones, under a name no load looks at."""
        self.root.mkdir(parents=True, exist_ok=True)
        staged = self.root / f".{name}.{uuid.uuid4().hex}.staged"
        if isinstance(index, VectorIndex):
            save_snapshot(index, staged, meta)
            return staged
        with staged.open("wb") as out:
            save_routing_snapshot(index, out, meta)
            out.flush()
            os.fsync(out.fileno())
        return staged

    def publish(self, staged: Path, name: str, index: VectorIndex | RoutingIndex) -> None:
        """Put a staged snapshot of ``index`` in place (atomic rename; the caller decides it
        still applies), and remove the other kind's: only one describes the collection."""
        routing = not isinstance(index, VectorIndex)
        os.replace(staged, self.routing_path(name) if routing else self.path(name))
        (self.path(name) if routing else self.routing_path(name)).unlink(missing_ok=True)

    def remove_leftovers(self, names: set[str]) -> None:
        """Delete staged files and snapshots of collections not in ``names`` (start-up)."""
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            foreign = path.suffix in (".snap", ".lists") and path.stem not in names
            if path.name.endswith(".staged") or foreign:
                path.unlink(missing_ok=True)

    def load(
        self, record: CollectionRecord, indexes: IndexFactory
    ) -> tuple[VectorIndex, int] | None:
        """The snapshot's index and the seq it reflects, if it belongs to this row (exact
        vectors of a compressed kind go where ``indexes`` keeps them)."""
        path = self.path(record.name)
        if not path.exists():
            return None
        try:
            index, meta = load_snapshot(path, indexes.exact_storage, indexes.exact_dir)
        except (SnapshotError, OSError, ValueError) as exc:
            log.warning(
                "snapshot unusable, rebuilding", extra={"path": str(path), "error": str(exc)}
            )
            return None
        if meta.get("collection_id") != record.id or index.dim != record.dim:
            return None
        return index, int(meta["seq"])

    def load_routing(
        self, record: CollectionRecord, clustering: Clustering
    ) -> tuple[RoutingIndex, int] | None:
        """The routing-only snapshot's index and the seq it reflects, if it belongs to this
        row and ``clustering``."""
        path = self.routing_path(record.name)
        if not path.exists():
            return None
        try:
            with path.open("rb") as src:
                index, meta = load_routing_snapshot(src, clustering)
        except (OSError, ValueError) as exc:
            log.warning("snapshot unusable", extra={"path": str(path), "error": str(exc)})
            return None
        if meta.get("collection_id") != record.id or index.dim != record.dim:
            return None
        return index, int(meta["seq"])

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)
        self.routing_path(name).unlink(missing_ok=True)
