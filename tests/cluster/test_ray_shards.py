"""Shards as Ray actors on a local 3-node cluster (one machine, 1 CPU per node), fed by the
PostgreSQL store: parity with the single-process engine, read-your-writes across shards,
kill -9 of a replica mid search loop, a shard with no live replica.

One cluster and one collection for the whole module (starting Ray costs seconds); 2 shards
x 2 replicas, so four actor processes.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster
from ray.exceptions import RayActorError

from app.cluster import ray_runtime
from app.cluster.placement import contiguous_placement, random_placement
from app.cluster.replica import ShardSpec
from app.cluster.shard_set import ShardSet, ShardUnavailable
from app.cluster.sharded import ShardedCollection, label_lists
from app.engine.allowed import AllowedIds
from app.engine.clustering import Clustering
from app.engine.ivf import VectorIndex
from app.engine.labels import list_labels
from app.engine.metric import prepare
from app.engine.routing import Router, centroid_router
from app.engine.training import TrainConfig, train_router
from app.store.collections import create_collection, get_collection
from app.store.db import Store
from app.store.migrate import upgrade
from app.store.placements import active_placement
from app.store.points import delete_points, upsert_points
from app.store.seq import current_seq, next_seq
from app.store.versions import load_clustering
from bench import debian
from tests.cluster.hits import assert_same_hits
from tests.cluster.sockets import descendants, listening_addresses
from tests.conftest import reset_pg
from tests.waiting import wait_until
from worker.build import run_build

K = 10
NPROBE = 6
SHARDS = 2
REPLICAS = 2


@dataclass
class World:
    store: Store
    url: str
    data: debian.Dataset
    ids: np.ndarray  # internal id of each document row
    clustering: Clustering
    whole: VectorIndex  # the single-process engine over the same points
    learned: Router
    spec: ShardSpec


@pytest.fixture(scope="module")
def world(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    reset_pg(pg_database)
    store = Store(pg_database)
    upgrade(store)
    data = debian.load("cos", n_docs=3000, n_train=600, n_test=60)
    record = create_collection(
        store, name="docs", dim=data.docs.shape[1], metric="cosine", nlist=48, algorithm="kmeans"
    )
    assert record is not None
    with store.write() as session:
        ids = upsert_points(
            session,
            record.id,
            next_seq(session),
            [str(i) for i in range(len(data.docs))],
            data.docs,
            [None] * len(data.docs),
        )
    run_build(store, "docs", {}, lambda _: None)
    with store.read() as session:
        record = get_collection(session, "docs")
        assert record is not None and record.clustering_version is not None
        clustering = load_clustering(session, record.id, record.clustering_version)
    label_lists(store, record.id, record.metric, clustering)  # as a rebalance does first
    whole = VectorIndex(record.dim, data.metric, clustering)
    whole.upsert(ids, data.docs)
    labels = list_labels(data.train_gt, clustering.assign(prepare(data.docs, data.metric)))
    learned = train_router(data.train_queries, labels, clustering, TrainConfig(epochs=3))
    spec = ShardSpec(
        pg_database,
        record.id,
        record.dim,
        record.metric,
        record.clustering_version,
        0,
        (),
        snapshot_dir=str(tmp_path_factory.mktemp("shard-snapshots")),
        snapshot_interval_s=0.5,
    )
    yield World(store, pg_database, data, ids, clustering, whole, learned, spec)
    store.dispose()


@pytest.fixture(scope="module")
def shards(ray_cluster: Cluster, world: World) -> Iterator[ShardSet]:
    placement = random_placement(world.clustering.nlist, SHARDS, seed=2)
    nodes = ray_runtime.alive_nodes()
    shard_set = ShardSet(world.spec, placement, REPLICAS, nodes, search_timeout_s=5)
    assert shard_set.wait_ready(120), shard_set.describe()
    yield shard_set
    shard_set.close()


def docs_by_id(world: World) -> np.ndarray:
    """The document vectors indexed by internal id (ids are dense from 1 in this store)."""
    out = np.zeros((int(world.ids.max()) + 1, world.data.docs.shape[1]), np.float32)
    out[world.ids] = world.data.docs
    return out


def probes_of(world: World, router: Router, queries: np.ndarray) -> np.ndarray:
    return router.route(prepare(queries, world.data.metric), NPROBE)


@pytest.mark.parametrize("routing", ["centroid", "learned"])
@pytest.mark.parametrize("filtered", [False, True])
def test_sharded_search_equals_the_single_process_engine(
    world: World, shards: ShardSet, routing: str, filtered: bool
) -> None:
    router = world.learned if routing == "learned" else centroid_router(world.clustering)
    queries = world.data.test_queries
    probes = probes_of(world, router, queries)
    allowed = None
    if filtered:
        mask = np.zeros(int(world.ids.max()) + 1, bool)
        mask[world.ids[::2]] = True  # every other document
        allowed = AllowedIds.from_mask(mask)
    expected = world.whole.search(
        queries, K, lists=probes, selector=allowed.selector if allowed else None
    )
    got = shards.search(queries, K, probes, allowed.bits if allowed else None)
    assert_same_hits(got.scores, got.ids, expected.scores, expected.ids, docs_by_id(world))
    assert got.missing == ()
    assert got.scanned == pytest.approx(expected.scanned)
    touched = [
        len({int(world_shard) for world_shard in shards.placement.shard_of[row]}) for row in probes
    ]
    assert got.shards_probed == pytest.approx(np.mean(touched))


def test_collection_info_names_nodes_pids_and_states(world: World, shards: ShardSet) -> None:
    info = shards.describe()
    assert [s["shard"] for s in info] == list(range(SHARDS))
    assert sum(s["points"] for s in info) == len(world.data.docs)
    assert sum(s["lists"] for s in info) == world.clustering.nlist
    for shard in info:
        nodes = {r["node"] for r in shard["replicas"]}
        assert len(nodes) == REPLICAS, "a shard's replicas sit on distinct nodes"
        assert all(r["state"] == "ready" and r["pid"] > 0 for r in shard["replicas"])
    # Each replica read the vectors of its own lists from the store, and no other.
    for row in shards.replicas:
        for replica in row:
            held = ray.get(replica.handle.info.remote())
            assert held["source"] == "store"
            assert held["vectors_read"] == held["points"] < len(world.data.docs)


def test_read_your_writes_across_shards(world: World, shards: ShardSet) -> None:
    """A point written to the store is found by the next search that names its seq, even
    when it moves to another shard's list; a deleted one is gone."""
    data, record_id = world.data, world.spec.collection_id
    vector = data.test_queries[:1]
    with world.store.write() as session:
        seq = next_seq(session)
        (new_id,) = upsert_points(session, record_id, seq, ["fresh"], vector, [None])
    probes = probes_of(world, centroid_router(world.clustering), vector)
    hits = shards.search(vector, 1, probes, min_seq=seq)
    assert hits.ids[0, 0] == new_id
    with world.store.write() as session:
        seq = next_seq(session)
        delete_points(session, record_id, seq, ["fresh"])
    hits = shards.search(vector, K, probes, min_seq=seq)
    assert new_id not in hits.ids


def test_kill_9_of_a_replica_mid_search_loop_fails_no_search(
    world: World, shards: ShardSet
) -> None:
    queries = world.data.test_queries[:20]
    probes = probes_of(world, centroid_router(world.clustering), queries)
    # Every replica serves the same state: the store's current one (earlier tests wrote).
    with world.store.read() as session:
        head = current_seq(session)
    expected = shards.search(queries, K, probes, min_seq=head)
    docs = docs_by_id(world)

    def same(got: Any) -> bool:
        try:  # a rebuilt replica may order duplicate documents differently
            assert_same_hits(got.scores, got.ids, expected.scores, expected.ids, docs)
        except AssertionError:
            return False
        return True

    victim = shards.replicas[0][0]
    old_pid = victim.pid
    assert old_pid is not None
    wait_until(
        lambda: ray.get(victim.handle.info.remote())["snapshot_seq"] >= head,
        what="the victim's shard snapshot",
    )
    outcomes: list[Any] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                got = shards.search(queries, K, probes, min_seq=head)
                outcomes.append(same(got))
            except Exception as exc:  # counted, never expected
                outcomes.append(exc)

    runner = threading.Thread(target=loop)
    runner.start()
    try:
        wait_until(lambda: len(outcomes) >= 5, what="searches before the kill")
        os.kill(old_pid, signal.SIGKILL)
        after = len(outcomes)
        wait_until(
            lambda: victim.state == "ready" and victim.pid != old_pid and len(outcomes) > after + 5,
            what="the replica rebuilt from the store, searches going on",
        )
    finally:
        stop.set()
        runner.join()
    assert all(o is True for o in outcomes), [o for o in outcomes if o is not True][:3]
    assert victim.info["points"] == shards.describe()[0]["points"]
    # Rebuilt from its shard snapshot, then caught up: it read no vector of the store.
    rebuilt = ray.get(victim.handle.info.remote())
    assert rebuilt["source"] == "snapshot" and rebuilt["vectors_read"] == 0


def test_a_replica_killed_between_searches_is_seen_under_its_new_pid(shards: ShardSet) -> None:
    """No search notices the death: Ray may restart the replica before the next health ping
    reaches it, and that ping's answer must then carry the new process into the set (a
    stale pid kept the collection info wrong, and bench/cluster.py waiting forever)."""
    victim = shards.replicas[1][1]
    old_pid = victim.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    wait_until(
        lambda: victim.state == "ready" and victim.pid not in (None, old_pid),
        what="the replica under its new pid",
    )
    pids = [r["pid"] for r in shards.describe()[1]["replicas"]]
    assert victim.pid in pids and old_pid not in pids


def test_a_shard_without_a_live_replica_fails_loudly_or_answers_partially(
    world: World, shards: ShardSet
) -> None:
    """Both replicas of shard 1 hang (SIGSTOP: alive to Ray, so never restarted): searches
    give up on each after the timeout, then fail naming the shard, or answer from shard 0
    flagged partial when asked; once the processes resume the replicas are ready again."""
    queries = world.data.test_queries[:5]
    probes = np.tile(np.arange(world.clustering.nlist), (len(queries), 1))  # both shards
    hung = [r.pid for r in shards.replicas[1]]
    for pid in hung:
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(ShardUnavailable) as err:
            shards.search(queries, K, probes)
        assert err.value.shard == 1
        assert all(r["state"] == "loading" for r in shards.describe()[1]["replicas"])
        partial = shards.search(queries, K, probes, partial=True)
    finally:
        for pid in hung:
            os.kill(pid, signal.SIGCONT)
    assert partial.missing == (1,)
    found = partial.ids[partial.ids >= 0]
    assert found.size == partial.ids.size, "shard 0 alone holds more than k points"
    own = set(shards.placement.lists_of(0).tolist())
    assert all(list_of(world, int(i)) in own for i in found)
    assert shards.wait_ready(120), "the replicas answer again"
    assert shards.search(queries, K, probes).missing == ()


def list_of(world: World, point: int) -> int:
    row = int(np.flatnonzero(world.ids == point)[0])
    vector = prepare(world.data.docs[row : row + 1], world.data.metric)
    return int(world.clustering.assign(vector)[0])


def test_rebalancing_under_a_search_loop_switches_the_epoch_without_a_failed_search(
    world: World, shards: ShardSet
) -> None:
    """One shard becomes two (a new placement, its replicas built from the store), while a
    search loop runs: every search answers the same, the store's active epoch switches,
    the old epoch's actors are stopped once drained."""
    nlist = world.clustering.nlist
    sharded = ShardedCollection(world.store, world.spec, ray_runtime.alive_nodes)
    try:
        sharded.rebalance(contiguous_placement(nlist, 1), replicas=1)
        first = sharded.serving
        assert first is not None
        queries = world.data.test_queries[:10]
        with world.store.read() as session:
            head = current_seq(session)
        expected = sharded.search(queries, K, NPROBE, min_seq=head)
        docs = docs_by_id(world)
        outcomes: list[Any] = []
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    got = sharded.search(queries, K, NPROBE, min_seq=head)
                    assert_same_hits(got.scores, got.ids, expected.scores, expected.ids, docs)
                    outcomes.append(got.shards_probed)
                except Exception as exc:  # counted, never expected
                    outcomes.append(exc)

        runner = threading.Thread(target=loop)
        runner.start()
        try:
            wait_until(lambda: len(outcomes) >= 3, what="searches on the first epoch")
            epoch = sharded.rebalance(random_placement(nlist, 2, seed=5), replicas=1)
            done = len(outcomes)
            wait_until(lambda: len(outcomes) >= done + 3, what="searches on the new epoch")
        finally:
            stop.set()
            runner.join()
        failures = [o for o in outcomes if not isinstance(o, float)]
        assert failures == [], failures[:3]
        assert outcomes[0] == 1.0 and outcomes[-1] > 1.0  # one shard, then two
        with world.store.read() as session:
            serving = active_placement(session, world.spec.collection_id)
        assert serving is not None and serving[0].epoch == epoch and serving[0].shards == 2
        with pytest.raises(RayActorError):
            ray.get(first.replicas[0][0].handle.info.remote(), timeout=30)
    finally:
        sharded.close()


def test_a_reclustering_is_served_by_new_replicas_built_from_the_store(
    world: World, shards: ShardSet
) -> None:
    """A new clustering (another build) is placed and served under a search loop: no search
    fails, and afterwards the hits are the single-process engine's on the new clustering."""
    sharded = ShardedCollection(world.store, world.spec, ray_runtime.alive_nodes)
    try:
        sharded.rebalance(contiguous_placement(world.clustering.nlist, 1), replicas=1)
        run_build(world.store, "docs", {"nlist": 32, "seed": 1}, lambda _: None)
        with world.store.read() as session:
            record = get_collection(session, "docs")
            assert record is not None and record.clustering_version is not None
            reclustered = load_clustering(session, record.id, record.clustering_version)
            head = current_seq(session)
        queries = world.data.test_queries[:10]
        outcomes: list[Any] = []
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    outcomes.append(sharded.search(queries, K, NPROBE, min_seq=head))
                except Exception as exc:  # counted, never expected
                    outcomes.append(exc)

        runner = threading.Thread(target=loop)
        runner.start()
        try:
            wait_until(lambda: len(outcomes) >= 3, what="searches on the old clustering")
            sharded.rebalance(
                random_placement(reclustered.nlist, 2, seed=3),
                replicas=1,
                clustering_version=reclustered.version,
            )
            done = len(outcomes)
            wait_until(lambda: len(outcomes) >= done + 3, what="searches on the new one")
        finally:
            stop.set()
            runner.join()
        assert [o for o in outcomes if isinstance(o, Exception)] == []
        assert sharded.clustering is not None
        assert sharded.clustering.version == reclustered.version
        whole = VectorIndex(record.dim, world.data.metric, reclustered)
        whole.upsert(world.ids, world.data.docs)
        probes = centroid_router(reclustered).route(prepare(queries, world.data.metric), NPROBE)
        expected = whole.search(queries, K, lists=probes)
        got = outcomes[-1]
        assert_same_hits(got.scores, got.ids, expected.scores, expected.ids, docs_by_id(world))
    finally:
        sharded.close()


def test_every_ray_process_listens_on_loopback_only(ray_cluster: Cluster, shards: ShardSet) -> None:
    nodes = [ray_cluster.head_node, *ray_cluster.worker_nodes]
    roots = {
        info.process.pid
        for node in nodes
        for infos in node.all_processes.values()
        for info in infos
        if info.process is not None
    }
    roots |= {r.pid for row in shards.replicas for r in row if r.pid}
    addresses = listening_addresses(descendants(roots))
    assert addresses, "Ray's processes listen somewhere"
    loopback = ("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")  # the last: IPv4-mapped
    assert all(a.startswith(loopback) for a in addresses), addresses


def test_a_removed_node_s_replicas_are_replaced_on_the_nodes_left(
    ray_cluster: Cluster, world: World, shards: ShardSet
) -> None:
    """Last in the module: it takes a node away. Replicas pinned to it die for good and new
    actors take their slots elsewhere; searches answer throughout from the other replica."""
    node = next(iter(ray_cluster.worker_nodes))
    lost = [r for row in shards.replicas for r in row if r.node == node.node_id]
    assert lost, "every node holds a replica (2 shards x 2 replicas over 3 nodes)"
    queries = world.data.test_queries[:5]
    probes = probes_of(world, centroid_router(world.clustering), queries)
    with world.store.read() as session:
        head = current_seq(session)
    expected = shards.search(queries, K, probes, min_seq=head)
    ray_cluster.remove_node(node)
    got = shards.search(queries, K, probes, min_seq=head)
    assert_same_hits(got.scores, got.ids, expected.scores, expected.ids, docs_by_id(world))
    wait_until(
        lambda: all(r.state == "ready" and r.node != node.node_id for r in lost),
        what="the removed node's replicas rebuilt on other nodes",
    )
    assert shards.search(queries, K, probes, min_seq=head).missing == ()
