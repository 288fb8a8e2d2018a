"""Shard snapshots are loaded only by a replica of the same lists of the same clustering,
never when damaged, a newer clustering's file replaces the older ones, and a dropped
collection's files go."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from app.cluster.shard_snapshots import load_shard, remove_dropped, save_shard, snapshot_path
from app.engine.clustering import Algorithm, train_clustering
from app.engine.ivf import VectorIndex
from app.engine.metric import Metric
from app.store.point_lists import ListsOf

DIM = 8


def _index(version: int) -> VectorIndex:
    x = np.random.default_rng(0).standard_normal((200, DIM)).astype(np.float32)
    trained = train_clustering(x, 4, Algorithm.KMEANS, Metric.L2, seed=1)
    clustering = replace(trained, version=version)
    index = VectorIndex(DIM, Metric.L2, clustering)
    index.upsert(np.arange(len(x)), x)
    return index


def test_a_snapshot_loads_back_for_its_own_lists_only(tmp_path: Path) -> None:
    part = ListsOf(collection_id=1, version=2, lists=(0, 3))
    save_shard(tmp_path, part, _index(2), seq=41)

    loaded = load_shard(tmp_path, part, DIM)

    assert loaded is not None and loaded[1] == 41 and loaded[0].count == 200
    assert load_shard(tmp_path, ListsOf(1, 2, (0, 1)), DIM) is None  # other lists
    assert load_shard(tmp_path, ListsOf(2, 2, (0, 3)), DIM) is None  # other collection
    assert load_shard(tmp_path, part, DIM + 1) is None


def test_a_damaged_snapshot_is_ignored(tmp_path: Path) -> None:
    part = ListsOf(1, 2, (0,))
    path = save_shard(tmp_path, part, _index(2), seq=5)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    assert load_shard(tmp_path, part, DIM) is None


def test_a_newer_clustering_s_snapshot_removes_the_older_ones(tmp_path: Path) -> None:
    old = ListsOf(1, 2, (0, 1))
    other_collection = ListsOf(7, 1, (0,))
    save_shard(tmp_path, old, _index(2), seq=5)
    save_shard(tmp_path, other_collection, _index(1), seq=5)

    save_shard(tmp_path, ListsOf(1, 3, (2,)), _index(3), seq=9)

    assert not snapshot_path(tmp_path, old).exists()
    assert snapshot_path(tmp_path, other_collection).exists()
    assert load_shard(tmp_path, ListsOf(1, 3, (2,)), DIM) is not None


def test_the_files_of_collections_no_longer_sharded_are_removed(tmp_path: Path) -> None:
    dropped, kept = ListsOf(3, 1, (0,)), ListsOf(12, 1, (0,))
    save_shard(tmp_path, dropped, _index(1), seq=5)
    save_shard(tmp_path, kept, _index(1), seq=5)
    interrupted = tmp_path / f".{snapshot_path(tmp_path, dropped).name}.0a1b.tmp"
    interrupted.write_bytes(b"half a snapshot")
    unrelated = tmp_path / "c3-notes.txt"
    unrelated.write_text("not ours")

    assert remove_dropped(tmp_path, {12}) == 2

    assert not snapshot_path(tmp_path, dropped).exists() and not interrupted.exists()
    assert load_shard(tmp_path, kept, DIM) is not None and unrelated.exists()
    assert remove_dropped(tmp_path / "absent", set()) == 0
