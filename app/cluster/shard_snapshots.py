"""Shard snapshots: one replica's lists in one file (``app/engine/snapshot.py``'s format), so
a restarted replica loads them and catches up from the seq they reflect, instead of reading
its lists from the store again.

Named by collection, clustering version and a digest of the lists, so a file is only ever
loaded by a replica of the same lists of the same clustering (whatever the epoch); its meta
says the same again and is checked. Like an API process's snapshot it is only an
accelerator: anything unreadable or foreign is ignored and the replica reads the store.
Replicas of one shard on one machine write the same file: each write is atomic (temp file
and rename), and either is a valid starting point. The files of a dropped collection are
removed (``remove_dropped``: the coordinator runs it on every node when a sharded
collection is dropped, and at start-up for those dropped while it was down).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from app.engine.exact import ExactStorage
from app.engine.ivf import VectorIndex
from app.engine.snapshot import SnapshotError, load_snapshot, save_snapshot
from app.store.point_lists import ListsOf

log = logging.getLogger(__name__)

# A shard snapshot, or the temp file of one being written (``save_snapshot``).
_FILE = re.compile(r"\.?c(\d+)-v\d+-[0-9a-f]+\.snap(\.[0-9a-f]+\.tmp)?")


def snapshot_path(root: Path, part: ListsOf) -> Path:
    digest = hashlib.sha256(",".join(map(str, part.lists)).encode()).hexdigest()[:16]
    return root / f"c{part.collection_id}-v{part.version}-{digest}.snap"


def _meta(part: ListsOf, seq: int) -> dict[str, object]:
    return {
        "collection_id": part.collection_id,
        "clustering_version": part.version,
        "lists": list(part.lists),
        "seq": seq,
    }


def save_shard(root: Path, part: ListsOf, index: VectorIndex, seq: int) -> Path:
    """Write ``index`` (holding every write up to ``seq``, maybe more) as ``part``'s file,
    and remove the collection's files of older clusterings: no replica will load them."""
    root.mkdir(parents=True, exist_ok=True)
    path = snapshot_path(root, part)
    save_snapshot(index, path, _meta(part, seq))
    for other in root.glob(f"c{part.collection_id}-v*-*.snap"):
        version = other.name.split("-")[1][1:]
        if version.isdigit() and int(version) < part.version:
            other.unlink(missing_ok=True)
    return path


def load_shard(
    root: Path,
    part: ListsOf,
    dim: int,
    exact_storage: ExactStorage = ExactStorage.FLOAT32,
    exact_dir: Path | None = None,
) -> tuple[VectorIndex, int] | None:
    """``part``'s index and the seq it reflects, if a sound snapshot of it exists (the
    exact vectors of code lists loaded into ``exact_storage``)."""
    path = snapshot_path(root, part)
    if not path.exists():
        return None
    try:
        index, meta = load_snapshot(path, exact_storage, exact_dir)
    except (SnapshotError, OSError, ValueError) as exc:
        log.warning("shard snapshot unusable", extra={"path": str(path), "error": str(exc)})
        return None
    seq = meta.get("seq")
    clustering = index.clustering
    if (
        not isinstance(seq, int)
        or meta != _meta(part, seq)
        or index.dim != dim
        or clustering is None
        or clustering.version != part.version
    ):
        return None
    return index, seq


def remove_dropped(root: Path, kept: set[int]) -> int:
    """Delete the files (and temp files) of every collection not in ``kept``, the
    collections still sharded: no replica will load them again. Returns how many."""
    if not root.is_dir():
        return 0
    removed = 0
    for path in root.iterdir():
        match = _FILE.fullmatch(path.name)
        if match is not None and int(match.group(1)) not in kept:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
