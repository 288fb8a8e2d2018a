"""Shards merged equal the single-process engine for the same probed lists (no Ray here:
tests/cluster/test_ray_shards.py runs the same shards as Ray actors)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from app.cluster.merge import merge_topk, shards_touched
from app.cluster.placement import Placement, contiguous_placement, random_placement
from app.cluster.shard import ShardIndex
from app.engine.allowed import AllowedIds
from app.engine.catalyzer import Catalyzer
from app.engine.clustering import Algorithm, Clustering, train_clustering
from app.engine.codes import CATALYZER_KINDS, Quantization, codebook_bytes, train_code_ivf
from app.engine.ivf import VectorIndex
from app.engine.labels import list_labels
from app.engine.metric import Metric, prepare
from app.engine.routing import Router, centroid_router
from app.engine.training import TrainConfig, train_router
from bench import debian
from tests.cluster.hits import assert_same_hits

K = 10
NLIST = 48
NPROBE = 6


@pytest.fixture(scope="module")
def world() -> tuple[debian.Dataset, Clustering, VectorIndex, Router]:
    ds = debian.load("cos", n_docs=3000, n_train=600, n_test=100)
    clustering = train_clustering(ds.docs, NLIST, Algorithm.KMEANS, ds.metric, seed=0)
    whole = VectorIndex(ds.docs.shape[1], ds.metric, clustering)
    whole.upsert(np.arange(len(ds.docs)), ds.docs)
    labels = list_labels(ds.train_gt, clustering.assign(prepare(ds.docs, ds.metric)))
    learned = train_router(
        ds.train_queries, labels, clustering, TrainConfig(epochs=3, patience=2, batch_size=256)
    )
    return ds, clustering, whole, learned


def sharded_search(
    shards: list[ShardIndex], queries: np.ndarray, probes: np.ndarray, bits: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    parts = [s.search(queries, K, probes, bits) for s in shards]
    return merge_topk([(p.scores, p.ids) for p in parts], len(queries), K)


def build_shards(
    ds: debian.Dataset, clustering: Clustering, placement: Placement
) -> list[ShardIndex]:
    shards = [
        ShardIndex(ds.docs.shape[1], ds.metric, clustering, placement.lists_of(s))
        for s in range(placement.shards)
    ]
    for shard in shards:
        shard.upsert(np.arange(len(ds.docs)), ds.docs)
    return shards


@pytest.mark.parametrize("routing", ["centroid", "learned"])
@pytest.mark.parametrize("filtered", [False, True])
def test_merged_shards_equal_the_single_process_index(world, routing: str, filtered: bool) -> None:
    ds, clustering, whole, learned = world
    router = learned if routing == "learned" else centroid_router(clustering)
    queries = ds.test_queries
    probes = router.route(prepare(queries, ds.metric), NPROBE)
    allowed = AllowedIds.from_mask(np.arange(len(ds.docs)) % 3 != 0) if filtered else None
    expected = whole.search(
        queries, K, lists=probes, selector=allowed.selector if allowed is not None else None
    )
    shards = build_shards(ds, clustering, random_placement(NLIST, 3, seed=1))
    assert sum(s.count for s in shards) == len(ds.docs)  # every point in exactly one shard
    scores, ids = sharded_search(shards, queries, probes, allowed.bits if allowed else None)
    assert_same_hits(scores, ids, expected.scores, expected.ids, ds.docs)
    assert (ids >= 0).all()
    if allowed is not None:
        assert (ids % 3 != 0).all()


def test_a_moved_point_leaves_its_old_shard(world) -> None:
    ds, clustering, _, _ = world
    shards = build_shards(ds, clustering, contiguous_placement(NLIST, 2))
    # Point 0 takes the vector of a point in the other shard's lists.
    home = next(s for s in shards if 0 in s.index)
    other = next(s for s in shards if s is not home)
    donor = next(i for i in range(len(ds.docs)) if i in other.index)
    for shard in shards:
        shard.upsert(np.array([0]), ds.docs[[donor]])
    assert 0 not in home.index and 0 in other.index
    assert sum(s.count for s in shards) == len(ds.docs)


def test_merge_keeps_padding_last_and_pads_short_parts() -> None:
    a = (np.array([[0.9, -np.inf]], np.float32), np.array([[4, -1]]))
    b = (np.array([[0.95]], np.float32), np.array([[7]]))
    scores, ids = merge_topk([a, b], 1, 3)
    np.testing.assert_array_equal(ids, [[7, 4, -1]])
    np.testing.assert_array_equal(scores, np.array([[0.95, 0.9, -np.inf]], np.float32))
    empty_scores, empty_ids = merge_topk([], 2, 2)
    assert (empty_ids == -1).all() and np.isneginf(empty_scores).all()


def test_shards_touched_counts_distinct_shards_and_skips_padding() -> None:
    shard_of = np.array([0, 0, 1, 2])
    probes = np.array([[0, 1, -1], [0, 2, 3], [3, -1, -1]])
    np.testing.assert_array_equal(shards_touched(probes, shard_of), [1, 3, 1])


def test_a_shard_rejects_lists_outside_the_clustering(world) -> None:
    ds, clustering, _, _ = world
    with pytest.raises(ValueError, match="list numbers"):
        ShardIndex(ds.docs.shape[1], Metric.COSINE, clustering, np.array([NLIST]))


def coded(ds: debian.Dataset, clustering: Clustering, kind: str) -> Quantization:
    """``kind``'s codes with a codebook trained once, as the worker stores it; a catalyzer
    kind with a catalyzer (here a random projection: any transform codes alike everywhere)."""
    dim = ds.docs.shape[1]
    q = Quantization.parse({"kind": kind}, dim)
    if q.kind in CATALYZER_KINDS:
        w = np.random.default_rng(0).standard_normal((dim, q.code_dim(dim)))
        return q.with_catalyzer(Catalyzer(((w, np.zeros(q.code_dim(dim))),)), 1)
    ivf = train_code_ivf(q, ds.docs.shape[1], ds.metric, clustering, prepare(ds.docs, ds.metric))
    return q.with_codebook(codebook_bytes(ivf), clustering.version)


def recall(ids: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per query, the share of ``truth``'s ids among ``ids``."""
    return np.array([len(set(a) & set(b)) / len(b) for a, b in zip(ids, truth, strict=True)])


@pytest.mark.parametrize("kind", ["sq8", "pq", "rabitq", "catalyzer-lattice"])
def test_coded_shards_rerank_a_superset_of_the_single_process_candidates(world, kind: str) -> None:
    ds, clustering, whole_float, learned = world
    codes = coded(ds, clustering, kind)
    dim, n = ds.docs.shape[1], len(ds.docs)
    whole = VectorIndex(dim, ds.metric, clustering, codes)
    whole.upsert(np.arange(n), ds.docs)
    placement = random_placement(NLIST, 3, seed=1)
    shards = [
        ShardIndex(dim, ds.metric, clustering, placement.lists_of(s), codes=codes) for s in range(3)
    ]
    for shard in shards:
        shard.upsert(np.arange(n), ds.docs)
    assert whole.coded and all(s.index.coded for s in shards)
    queries = ds.test_queries
    probes = learned.route(prepare(queries, ds.metric), NPROBE)
    truth = whole_float.search(queries, K, lists=probes)  # exact over the probed lists
    rerank = K  # no more candidates than hits: the single process misses some of the truth
    single = whole.search(queries, K, lists=probes, rerank=rerank)
    parts = [s.search(queries, K, probes, rerank=rerank) for s in shards]
    _, ids = merge_topk([(p.scores, p.ids) for p in parts], len(queries), K)
    ours, theirs = recall(ids, truth.ids), recall(single.ids, truth.ids)
    assert theirs.mean() < 1.0  # the cut matters here
    assert (ours >= theirs).all() and ours.mean() > theirs.mean()
    rescored = sum(p.candidates for p in parts) / len(queries)
    assert rescored > single.candidates  # every touched shard re-scores up to ``rerank``
    # Re-ranking every candidate of the probed lists is exact search over them.
    everything = [s.search(queries, K, probes, rerank=n) for s in shards]
    scores, ids = merge_topk([(p.scores, p.ids) for p in everything], len(queries), K)
    assert_same_hits(scores, ids, truth.scores, truth.ids, ds.docs)


@pytest.mark.parametrize("kind", ["none", "sq8"])
@pytest.mark.parametrize("counts", ["none", "exact", "short"])
def test_a_shard_sized_for_its_lists_fills_them_where_they_are(
    world: tuple[debian.Dataset, Clustering, VectorIndex, Router],
    kind: str,
    counts: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loaded a block at a time (as a replica reads the store), a list sized first never
    moves, so it holds no slack, even where the store's count fell a little short (rows
    not labelled yet): its headroom takes them. A list not sized moves as it grows. Code
    lists keep their exact vectors in a store sized at once too; lists not the shard's get
    no room."""
    ds, clustering, _, _ = world
    codes = coded(ds, clustering, kind) if kind != "none" else None
    shard = ShardIndex(ds.docs.shape[1], ds.metric, clustering, np.arange(0, NLIST, 2), codes=codes)
    lists = clustering.assign(prepare(ds.docs, ds.metric))
    sizes = np.bincount(lists, minlength=NLIST)
    given: list[np.ndarray] = []
    reserve = shard.index.reserve
    monkeypatch.setattr(shard.index, "reserve", lambda c: (given.append(c), reserve(c)))
    if counts != "none":
        shard.reserve(sizes if counts == "exact" else sizes - sizes // 40 - 1)
        [room] = given
        assert not room[1::2].any() and (room[::2] >= sizes[::2]).all()
    addresses: dict[int, set[int]] = {}
    for start in range(0, len(ds.docs), 100):
        part = slice(start, start + 100)
        shard.upsert(np.arange(len(ds.docs))[part], ds.docs[part], lists[part])
        for list_no in shard.lists.tolist():
            address = _list_address(shard.index, list_no)
            if address is not None:
                addresses.setdefault(list_no, set()).add(address)
    assert shard.count == int(np.isin(lists, shard.lists).sum())
    moved = [list_no for list_no, seen in addresses.items() if len(seen) > 1]
    assert (not moved) is (counts != "none")
    exact = shard.index._state.exact
    if exact is not None and counts != "none":
        assert len(exact._data) == given[0].sum()  # taken once, never grown


def _list_address(index: VectorIndex, list_no: int) -> int | None:
    """Where a list's entries are (None while it is empty)."""
    ivf = index._state.ivf
    if ivf.invlists.list_size(list_no) == 0:
        return None
    return int(faiss.rev_swig_ptr(ivf.invlists.get_codes(list_no), 1).ctypes.data)
