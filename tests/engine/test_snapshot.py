"""Snapshots restore the exact index, and a damaged file is refused, never half-loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.engine.clustering import Algorithm, train_clustering
from app.engine.ivf import VectorIndex
from app.engine.metric import Metric, prepare
from app.engine.snapshot import SnapshotError, load_snapshot, save_snapshot
from bench.debian import Dataset

META = {"applied_seq": 1234, "collection": "docs"}


@pytest.fixture
def index(random_vectors: np.ndarray) -> VectorIndex:
    x = random_vectors
    clustering = train_clustering(
        prepare(x, Metric.COSINE), 16, Algorithm.SPHERICAL, Metric.COSINE, seed=4, version=7
    )
    index = VectorIndex(x.shape[1], Metric.COSINE, clustering)
    index.upsert(np.arange(len(x)) * 3, x)
    index.remove(np.arange(0, 300, 3))
    return index


def assert_same_answers(a: VectorIndex, b: VectorIndex, q: np.ndarray) -> None:
    for kw in ({"exact": True}, {"nprobe": 1}, {"nprobe": 4}):
        ra, rb = a.search(q, 10, **kw), b.search(q, 10, **kw)
        np.testing.assert_array_equal(ra.ids, rb.ids)
        np.testing.assert_array_equal(ra.scores, rb.scores)


def test_round_trip_restores_results_clustering_and_meta(
    index: VectorIndex, random_queries: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "docs.snap"
    save_snapshot(index, path, META)
    loaded, meta = load_snapshot(path)
    assert meta == META
    assert loaded.dim == index.dim and loaded.metric is index.metric
    assert len(loaded) == len(index) and 0 not in loaded and 300 in loaded
    assert loaded.clustering is not None and index.clustering is not None
    assert loaded.clustering.version == 7
    assert loaded.clustering.algorithm is Algorithm.SPHERICAL
    assert loaded.clustering.params == index.clustering.params
    np.testing.assert_array_equal(loaded.clustering.bias, index.clustering.bias)
    np.testing.assert_array_equal(
        loaded.clustering.representatives, index.clustering.representatives
    )
    np.testing.assert_array_equal(loaded.list_sizes(), index.list_sizes())
    assert_same_answers(index, loaded, random_queries)
    # Still a working index: O(1) removal survives the round trip.
    assert loaded.remove(np.array([300])) == 1 and 300 not in loaded
    assert [p.name for p in tmp_path.iterdir()] == ["docs.snap"]  # no temp file left over


def test_an_unclustered_index_round_trips(
    random_vectors: np.ndarray, random_queries: np.ndarray, tmp_path: Path
) -> None:
    index = VectorIndex(32, Metric.L2)
    index.upsert(np.arange(100), random_vectors[:100])
    save_snapshot(index, tmp_path / "s", {})
    loaded, meta = load_snapshot(tmp_path / "s")
    assert meta == {} and loaded.clustering is None
    assert_same_answers(index, loaded, random_queries)


def test_saving_over_a_snapshot_replaces_it(index: VectorIndex, tmp_path: Path) -> None:
    path = tmp_path / "s"
    save_snapshot(index, path, {"applied_seq": 1})
    save_snapshot(index, path, {"applied_seq": 2})
    assert load_snapshot(path)[1] == {"applied_seq": 2}


@pytest.mark.parametrize("keep", [0, 7, 0.5, -1])
def test_a_truncated_snapshot_is_refused(index: VectorIndex, tmp_path: Path, keep: float) -> None:
    path = tmp_path / "s"
    save_snapshot(index, path, META)
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:cut])
    with pytest.raises(SnapshotError):
        load_snapshot(path)


@pytest.mark.parametrize("where", [3, 20, 0.3, 0.9, -40, -1])
def test_a_bit_flip_anywhere_is_refused(index: VectorIndex, tmp_path: Path, where: float) -> None:
    path = tmp_path / "s"
    save_snapshot(index, path, META)
    data = bytearray(path.read_bytes())
    at = int(len(data) * where) if isinstance(where, float) else where % len(data)
    data[at] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError):
        load_snapshot(path)


def test_a_missing_snapshot_is_a_snapshot_error(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError):
        load_snapshot(tmp_path / "absent")


def test_unserialisable_meta_fails_without_touching_the_old_file(
    index: VectorIndex, tmp_path: Path
) -> None:
    path = tmp_path / "s"
    save_snapshot(index, path, {"applied_seq": 1})
    with pytest.raises(TypeError):
        save_snapshot(index, path, {"bad": object()})
    assert load_snapshot(path)[1] == {"applied_seq": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_debian_slice_round_trip(debian_cos: Dataset, tmp_path: Path) -> None:
    x = debian_cos.docs
    clustering = train_clustering(x, 40, Algorithm.KMEANS, Metric.COSINE, seed=0)
    index = VectorIndex(x.shape[1], Metric.COSINE, clustering)
    index.upsert(np.arange(len(x)), x)
    save_snapshot(index, tmp_path / "debian.snap", {"applied_seq": len(x)})
    loaded, _ = load_snapshot(tmp_path / "debian.snap")
    assert_same_answers(index, loaded, debian_cos.test_queries[:50])
