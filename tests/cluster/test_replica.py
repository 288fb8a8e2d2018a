"""A shard replica builds itself from its lists' rows in the store and follows the change
sequence, reading only the vectors of its lists, on both backends (in-process here;
tests/cluster/test_ray_shards.py runs replicas as Ray actors)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from sqlalchemy import delete as sql_delete

from app.cluster.placement import contiguous_placement
from app.cluster.replica import ShardReplica, ShardSpec, StaleRead
from app.cluster.shard import ShardIndex
from app.cluster.sharded import label_lists
from app.engine.catalyzer import Catalyzer
from app.engine.codes import Quantization
from app.engine.metric import prepare
from app.store.collections import create_collection, get_collection, set_quantization
from app.store.db import Store
from app.store.models import CodebookRow
from app.store.points import delete_points, upsert_points
from app.store.seq import next_seq
from app.store.versions import load_clustering
from bench import debian
from tests.waiting import wait_until
from worker.build import run_build
from worker.quantize import run_quantize

SHARDS = 2
SQ8 = {"kind": "sq8"}


@pytest.fixture(scope="module")
def data() -> debian.Dataset:
    return debian.load("cos", n_docs=1500, n_train=10, n_test=10)


def write(store: Store, cid: int, names: list[str], vectors: np.ndarray) -> tuple[int, np.ndarray]:
    with store.write() as session:
        seq = next_seq(session)
        ids = upsert_points(session, cid, seq, names, vectors, [None] * len(names))
    return seq, ids


@pytest.fixture
def replicas(
    store: Store, database_url: str, data: debian.Dataset
) -> Iterator[tuple[list[ShardReplica], np.ndarray]]:
    """Both shards of a built 24-list collection, and the internal ids of its documents."""
    record = create_collection(
        store, name="docs", dim=data.docs.shape[1], metric="cosine", nlist=24, algorithm="kmeans"
    )
    assert record is not None
    _, ids = write(store, record.id, [str(i) for i in range(len(data.docs))], data.docs)
    run_build(store, "docs", {}, lambda _: None)
    with store.read() as session:
        record = get_collection(session, "docs")
        assert record is not None and record.clustering_version is not None
        clustering = load_clustering(session, record.id, record.clustering_version)
    assert label_lists(store, record.id, record.metric, clustering) == len(data.docs)
    placement = contiguous_placement(clustering.nlist, SHARDS)
    out = [
        ShardReplica(
            ShardSpec(
                database_url,
                record.id,
                record.dim,
                record.metric,
                record.clustering_version,
                s,
                tuple(placement.lists_of(s).tolist()),
                catchup_interval_s=0.05,
            )
        )
        for s in range(SHARDS)
    ]
    yield out, ids
    for replica in out:
        replica.close()


def owner(replicas: list[ShardReplica], vector: np.ndarray) -> ShardReplica:
    list_no = int(
        replicas[0].shard.clustering.assign(prepare(vector, replicas[0].shard.index.metric))[0]
    )
    return next(r for r in replicas if list_no in set(r.shard.lists.tolist()))


def test_replicas_load_their_lists_from_the_store(replicas, data: debian.Dataset) -> None:
    shards, _ = replicas
    assert sum(r.shard.count for r in shards) == len(data.docs)
    for replica in shards:
        sizes = replica.shard.list_sizes()
        others = np.setdiff1d(np.arange(len(sizes)), replica.shard.lists)
        assert sizes[others].sum() == 0 and sizes[replica.shard.lists].sum() == replica.shard.count
        assert replica.info()["points"] == replica.shard.count
        # The points are labelled: a replica reads the vectors of its own lists, no other.
        assert replica.info()["vectors_read"] == replica.shard.count < len(data.docs)


def test_a_replica_sizes_its_lists_by_the_store_s_count_before_reading_a_point(
    replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards, _ = replicas
    given: list[tuple[np.ndarray, int]] = []
    reserve = ShardIndex.reserve

    def spy(shard: ShardIndex, counts: np.ndarray) -> None:
        given.append((counts.copy(), shard.count))
        reserve(shard, counts)

    monkeypatch.setattr(ShardIndex, "reserve", spy)
    again = ShardReplica(shards[0].spec)
    try:
        [(counts, held)] = given
        assert held == 0
        ours = again.shard.lists
        np.testing.assert_array_equal(counts[ours], again.shard.list_sizes()[ours])
    finally:
        again.close()


def test_a_labelled_write_is_read_only_by_the_shard_of_its_list(
    store: Store, replicas, data: debian.Dataset
) -> None:
    shards, ids = replicas
    cid = shards[0].spec.collection_id
    home = owner(shards, data.docs[:1])
    version = home.spec.clustering_version
    list_no = home.shard.clustering.assign(prepare(data.docs[:1], home.shard.index.metric))
    before = [r.vectors_read for r in shards]
    with store.write() as session:
        seq = next_seq(session)
        upsert_points(session, cid, seq, ["0"], data.docs[:1] * 2.0, [None], (version, list_no))
    wait_until(lambda: all(r.applied_seq >= seq for r in shards), what="both caught up")
    assert [r.vectors_read - b for r, b in zip(shards, before, strict=True)] == [
        int(r is home) for r in shards
    ]
    assert ids[0] in home.shard.index


def test_replicas_follow_the_change_sequence_in_the_background(
    store: Store, replicas, data: debian.Dataset
) -> None:
    shards, ids = replicas
    cid = shards[0].spec.collection_id
    moved_from = owner(shards, data.docs[:1])
    target = next(
        i for i in range(len(data.docs)) if owner(shards, data.docs[i : i + 1]) is not moved_from
    )
    write(store, cid, ["0"], data.docs[target : target + 1])  # point 0 moves shard
    with store.write() as session:
        delete_seq = next_seq(session)
        delete_points(session, cid, delete_seq, ["1"])
    wait_until(lambda: all(r.applied_seq >= delete_seq for r in shards), what="both caught up")
    assert ids[0] not in moved_from.shard.index
    assert ids[0] in owner(shards, data.docs[target : target + 1]).shard.index
    assert all(ids[1] not in r.shard.index for r in shards)
    assert sum(r.shard.count for r in shards) == len(data.docs) - 1


def test_a_search_waits_for_min_seq_and_tells_when_it_cannot(
    store: Store, replicas, data: debian.Dataset
) -> None:
    shards, _ = replicas
    cid = shards[0].spec.collection_id
    vector = data.docs[:1] * -1.0  # a new direction: its own nearest neighbour
    seq, (new_id,) = write(store, cid, ["new"], vector)
    home = owner(shards, vector)
    probes = np.arange(home.shard.clustering.nlist)[None, :]
    hits = home.search(vector, 1, probes, min_seq=seq)
    assert hits.ids[0, 0] == new_id
    with pytest.raises(StaleRead):
        home.search(vector, 1, probes, min_seq=seq + 1000, timeout_s=0.01)


def test_a_restarted_replica_starts_from_its_snapshot_and_catches_up(
    store: Store, replicas, data: debian.Dataset, tmp_path
) -> None:
    shards, _ = replicas
    cid = shards[0].spec.collection_id
    spec = replace(shards[0].spec, snapshot_dir=str(tmp_path))
    first = ShardReplica(spec)
    assert first.source == "store" and first.snapshot() and not first.snapshot()
    first.close()
    write(store, cid, ["new"], data.docs[:1] * -1.0)  # not labelled: every shard reads it
    with store.write() as session:
        head = next_seq(session)
        delete_points(session, cid, head, ["1", "2"])

    restarted = ShardReplica(spec)
    from_store = ShardReplica(replace(spec, snapshot_dir=None))
    other = ShardReplica(replace(shards[1].spec, snapshot_dir=str(tmp_path)))

    assert restarted.source == "snapshot" and restarted.applied_seq >= head
    assert restarted.vectors_read == 1  # the new point; deletions are ids
    assert other.source == "store"  # another shard's lists: the file is not its own
    nlist = restarted.shard.clustering.nlist
    probes = np.arange(nlist)[None, :].repeat(len(data.test_queries), 0)
    got = restarted.search(data.test_queries, 20, probes)
    want = from_store.search(data.test_queries, 20, probes)
    assert restarted.shard.count == from_store.shard.count
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
    for replica in (restarted, from_store, other):
        replica.close()


def test_a_replica_of_code_lists_codes_with_the_stored_codebook(
    store: Store, replicas, data: debian.Dataset, tmp_path
) -> None:
    shards, _ = replicas
    spec = shards[0].spec
    run_quantize(store, "docs", {"quantization": SQ8}, lambda _: None)  # stores the codebook
    coded = replace(spec, quantization=SQ8, snapshot_dir=str(tmp_path))
    first = ShardReplica(coded)
    index = first.shard.index
    assert index.coded and index.quantization.codebook_version == spec.clustering_version
    assert first.info()["coded"] and first.shard.count == shards[0].shard.count
    probes = np.arange(first.shard.clustering.nlist)[None, :].repeat(len(data.test_queries), 0)
    exact = shards[0].search(data.test_queries, 10, probes)  # float lists: exact scores
    every = first.search(data.test_queries, 10, probes, rerank=len(data.docs))
    np.testing.assert_array_equal(every.ids, exact.ids)
    assert every.candidates > 0
    assert first.snapshot()
    first.close()
    again = ShardReplica(coded)  # its snapshot holds these codes
    other = ShardReplica(replace(coded, quantization={"kind": "rabitq"}))  # ... not these
    assert again.source == "snapshot" and again.shard.index.coded
    assert other.source == "store" and other.shard.index.quantization.kind.value == "rabitq"
    # No codebook stored (data older than stored codebooks): the replica trains its own.
    with store.write() as session:
        session.execute(sql_delete(CodebookRow))
    own = ShardReplica(replace(coded, snapshot_dir=None))
    assert own.shard.index.coded and own.shard.index.quantization.codebook_version is None
    for replica in (again, other, own):
        replica.close()


def test_a_replica_of_a_catalyzer_kind_applies_the_stored_catalyzer(
    store: Store, replicas, data: debian.Dataset
) -> None:
    shards, _ = replicas
    dim = data.docs.shape[1]
    lattice = Quantization.parse({"kind": "catalyzer-lattice"}, dim)
    w = np.random.default_rng(0).standard_normal((dim, lattice.code_dim(dim)))
    catalyzer = Catalyzer(((w, np.zeros(lattice.code_dim(dim))),))  # any transform will do
    set_quantization(store, "docs", lattice.to_dict(), catalyzer.to_bytes())
    with store.read() as session:
        record = get_collection(session, "docs")
    assert record is not None and record.catalyzer_version is not None
    spec = replace(
        shards[0].spec,
        quantization=lattice.to_dict(),
        catalyzer_version=record.catalyzer_version,
    )
    replica = ShardReplica(spec)
    held = replica.shard.index.quantization
    assert replica.shard.index.coded and held.catalyzer is not None
    assert held.catalyzer.to_bytes() == catalyzer.to_bytes()
    probes = np.arange(replica.shard.clustering.nlist)[None, :].repeat(len(data.test_queries), 0)
    exact = shards[0].search(data.test_queries, 10, probes)
    every = replica.search(data.test_queries, 10, probes, rerank=len(data.docs))
    np.testing.assert_array_equal(every.ids, exact.ids)
    replica.close()
