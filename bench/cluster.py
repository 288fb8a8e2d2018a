"""Sharded search over a local Ray cluster (issue 19): N = 1, 2, 4 shards x 2 replicas.

One machine simulates ``--nodes`` Ray nodes (``ray.cluster_utils.Cluster``, loopback, no
dashboard). The Debian documents go into a fresh PostgreSQL database (the source of truth
the replicas load from), are clustered by the build job (k-means, ~4 sqrt(n) lists), and
for each N the co-probe placement of the train queries' probes is served by ``ShardSet``:
the coordinator (this process) routes by centroids at ``--nprobe``, scatters to the shards
the probes touch and merges. Measured per N: single-query latency p50/p99 and q/s (one
client), q/s with ``--clients`` concurrent clients, shards probed per query, replica load
time (store -> ready), rebuild time after kill -9 of a replica (until ready again, with a
new pid), resident memory per node (actor processes' RSS) and the index bytes per replica,
and what each replica read: the vectors it read from the store, its peak RSS (VmHWM).
Beside the replicas, the coordinator: this process holds what the API process holds of a
sharded collection (its routing-only index, built from the store's labels as the
registry builds it; the documents are dropped once stored), so its RSS and that index's
size are the API process's side (without the labels and payloads the API keeps too).

The points are labelled with their lists first (as a rebalance does), so a replica reads
only its lists' rows; ``--no-labels`` leaves them unlabelled, so every replica reads every
row and keeps its own (what replicas did before the labels: the "before" of issue 19's
"a shard holds only its lists"). ``--snapshots`` lets replicas write shard snapshots, so
the killed replica restarts from its snapshot instead of the store.
On a shared 2-core machine the timings are noisy: the lead re-runs them on a quiet one.

    .venv/bin/python bench/cluster.py                  # all documents, N = 1 2 4
    .venv/bin/python bench/cluster.py --docs 20000     # a slice
    .venv/bin/python bench/cluster.py --shards 2       # one N alone
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from app.cluster import ray_runtime

ray_runtime.bind_loopback()  # before ray is imported: every node binds 127.0.0.1

import numpy as np
import ray
from ray.cluster_utils import Cluster

from app.cluster.placement import coprobe_placement
from app.cluster.replica import ShardSpec
from app.cluster.shard_set import ShardSet
from app.cluster.sharded import label_lists
from app.engine.metric import prepare
from app.engine.routing import centroid_router
from app.service.indexes import routing_index
from app.store.collections import create_collection, get_collection
from app.store.db import Store
from app.store.migrate import upgrade
from app.store.points import upsert_points
from app.store.seq import next_seq
from app.store.versions import load_clustering
from bench import debian
from bench.databases import postgres_database
from worker.build import run_build

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 5000
K = 10


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory (``VmHWM``: its peak) from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def fill_store(store: Store, ds: debian.Dataset) -> int:
    record = create_collection(
        store,
        name="docs",
        dim=ds.docs.shape[1],
        metric=str(ds.metric),
        nlist=None,
        algorithm="kmeans",
    )
    assert record is not None
    for start in range(0, len(ds.docs), BATCH):
        part = ds.docs[start : start + BATCH]
        with store.write() as session:
            names = [str(i) for i in range(start, start + len(part))]
            upsert_points(session, record.id, next_seq(session), names, part, [None] * len(part))
    run_build(store, "docs", {}, lambda _: None)
    return record.id


def measure(
    shard_set: ShardSet, queries: np.ndarray, probes: np.ndarray, clients: int
) -> dict[str, Any]:
    latencies = []
    touched = []
    started = time.perf_counter()
    for i in range(len(queries)):
        t = time.perf_counter()
        hits = shard_set.search(queries[i : i + 1], K, probes[i : i + 1])
        latencies.append(time.perf_counter() - t)
        touched.append(hits.shards_probed)
    serial_s = time.perf_counter() - started
    done = [0]
    lock = threading.Lock()

    def client(rows: np.ndarray) -> None:
        for i in rows.tolist():
            shard_set.search(queries[i : i + 1], K, probes[i : i + 1])
            with lock:
                done[0] += 1

    parts = np.array_split(np.arange(len(queries)), clients)
    threads = [threading.Thread(target=client, args=(p,)) for p in parts]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    concurrent_s = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "qps_1_client": round(len(queries) / serial_s, 1),
        f"qps_{clients}_clients": round(done[0] / concurrent_s, 1),
        "shards_probed": round(float(np.mean(touched)), 2),
    }


def rebuild_seconds(shard_set: ShardSet, snapshots: bool) -> tuple[float, str]:
    """Seconds from kill -9 of a replica until it is ready again, and where it loaded from."""
    victim = shard_set.replicas[0][0]
    old = victim.pid
    assert old is not None
    while snapshots and ray.get(victim.handle.info.remote())["snapshot_seq"] < 0:
        time.sleep(0.1)
    started = time.perf_counter()
    os.kill(old, signal.SIGKILL)
    # The coordinator notices on its next health ping (or search); then the actor reloads.
    while not (victim.state == "ready" and victim.pid not in (None, old)):
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    return seconds, ray.get(victim.handle.info.remote())["source"]


def memory_per_node(shard_set: ShardSet) -> dict[str, int]:
    per_node: dict[str, int] = {}
    for row in shard_set.replicas:
        for replica in row:
            if replica.pid:
                per_node[replica.node[:8]] = per_node.get(replica.node[:8], 0) + rss_bytes(
                    replica.pid
                )
    return per_node


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--variant", default="cos", choices=["cos", "ip"])
    ap.add_argument("--docs", type=int, default=None, help="first N documents (default: all)")
    ap.add_argument(
        "--shards", type=int, nargs="+", default=[1, 2, 4], help="N [N ...]: shard counts to run"
    )
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--nprobe", type=int, default=27, help="centroid recall@10 ~.90 on cos")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--out", default="cluster")
    ap.add_argument("--no-labels", action="store_true", help="replicas read every row")
    ap.add_argument("--snapshots", action="store_true", help="replicas write shard snapshots")
    args = ap.parse_args()

    ds = debian.load(args.variant, n_docs=args.docs) if args.docs else debian.load(args.variant)
    with postgres_database("vecroute_bench") as url:
        root = tempfile.mkdtemp(prefix="vr-ray-")
        os.makedirs(os.path.join(root, "ray"))
        os.environ["RAY_TMPDIR"] = root
        cluster = None
        rows: list[dict[str, Any]] = []
        try:
            store = Store(url)
            upgrade(store)
            t = time.perf_counter()
            cid = fill_store(store, ds)
            fill_s = time.perf_counter() - t
            with store.read() as session:
                record = get_collection(session, "docs")
                assert record is not None and record.clustering_version is not None
                clustering = load_clustering(session, cid, record.clustering_version)
            t = time.perf_counter()
            if not args.no_labels:
                label_lists(store, cid, record.metric, clustering)
            label_s = time.perf_counter() - t
            sizes = np.bincount(
                clustering.assign(prepare(ds.docs, ds.metric)), minlength=clustering.nlist
            )
            router = centroid_router(clustering)
            logged = router.route(prepare(ds.train_queries, ds.metric), args.nprobe)
            queries = ds.test_queries[: args.queries]
            probes = router.route(prepare(queries, ds.metric), args.nprobe)
            n_docs = len(ds.docs)
            # Stored: the coordinator holds none (a fresh empty array: a view would keep them).
            ds = dataclasses.replace(ds, docs=np.empty((0, record.dim), np.float32))
            gc.collect()
            with store.read() as session:
                coordinator = routing_index(session, record, clustering)
            ray_dir = os.path.join(root, "ray")
            head = {"num_cpus": 1, "include_dashboard": False, "temp_dir": ray_dir}
            cluster = Cluster(initialize_head=True, head_node_args=head)
            for _ in range(args.nodes - 1):
                cluster.add_node(num_cpus=1)
            ray.init(address=cluster.address, namespace=ray_runtime.NAMESPACE, log_to_driver=False)
            spec = ShardSpec(
                url,
                cid,
                record.dim,
                record.metric,
                record.clustering_version,
                0,
                (),
                snapshot_dir=os.path.join(root, "shard-snapshots") if args.snapshots else None,
                snapshot_interval_s=1.0,
            )
            for shards in args.shards:
                placement = coprobe_placement(logged, sizes, shards)
                t = time.perf_counter()
                shard_set = ShardSet(spec, placement, args.replicas, ray_runtime.alive_nodes())
                assert shard_set.wait_ready(600)
                ready_s = time.perf_counter() - t
                shard_set.search(queries[:50], K, probes[:50])  # warm the actors' first calls
                row: dict[str, Any] = {"shards": shards, "replicas": args.replicas}
                row |= measure(shard_set, queries, probes, args.clients)
                infos = [r.info for row_ in shard_set.replicas for r in row_]
                row["replica_load_s_max"] = max(i["load_seconds"] for i in infos)
                row["all_ready_s"] = round(ready_s, 2)
                largest = max(i["memory_bytes"] for i in infos)
                row["index_mib_per_replica"] = round(largest / 2**20, 1)
                row["rss_mib_per_node"] = {
                    n: round(b / 2**20) for n, b in memory_per_node(shard_set).items()
                }
                row["vectors_read_per_replica"] = [i["vectors_read"] for i in infos]
                row["peak_rss_mib_per_replica"] = [
                    round(rss_bytes(r.pid, "VmHWM") / 2**20)
                    for row_ in shard_set.replicas
                    for r in row_
                    if r.pid
                ]
                rebuild_s, row["rebuilt_from"] = rebuild_seconds(shard_set, args.snapshots)
                row["rebuild_s"] = round(rebuild_s, 2)
                row["points_per_shard"] = [s["points"] for s in shard_set.describe()]
                row["replica_bytes_per_vector"] = round(
                    max(i["memory_bytes"] / max(i["points"], 1) for i in infos), 1
                )
                row["coordinator_index_mib"] = round(coordinator.memory_bytes() / 2**20, 2)
                row["coordinator_bytes_per_vector"] = round(coordinator.bytes_per_vector(), 1)
                row["coordinator_rss_mib"] = round(rss_bytes(os.getpid()) / 2**20)
                rows.append(row)
                print(json.dumps(row))
                shard_set.close()
        finally:
            if ray.is_initialized():
                ray.shutdown()
            if cluster is not None:
                cluster.shutdown()
            shutil.rmtree(root, ignore_errors=True)
    meta = {
        "args": vars(args),
        "docs": n_docs,
        "nlist": int(clustering.nlist),
        "store_fill_and_build_s": round(fill_s, 1),
        "label_s": round(label_s, 1),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{args.out}.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print_table(rows, meta, args.clients)
    print(f"wrote {path}")


def print_table(rows: list[dict[str, Any]], meta: dict[str, Any], clients: int) -> None:
    print(f"{meta['docs']:,} docs, {meta['nlist']} lists, nprobe {meta['args']['nprobe']}")
    print(
        f"| shards x replicas | p50 / p99 ms | q/s (1 client) | q/s ({clients} clients) "
        "| shards probed | replica load s | rebuild s (from) | index MiB / replica "
        "| RSS MiB per node | vectors read / replica | peak RSS MiB / replica "
        "| coordinator RSS MiB (index MiB) | bytes / vector: coordinator, replica |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['shards']} x {r['replicas']} | {r['p50_ms']} / {r['p99_ms']} "
            f"| {r['qps_1_client']} | {r[f'qps_{clients}_clients']} | {r['shards_probed']} "
            f"| {r['replica_load_s_max']} | {r['rebuild_s']} ({r['rebuilt_from']}) "
            f"| {r['index_mib_per_replica']} "
            f"| {', '.join(str(v) for v in r['rss_mib_per_node'].values())} "
            f"| {', '.join(str(v) for v in r['vectors_read_per_replica'])} "
            f"| {', '.join(str(v) for v in r['peak_rss_mib_per_replica'])} "
            f"| {r['coordinator_rss_mib']} ({r['coordinator_index_mib']}) "
            f"| {r['coordinator_bytes_per_vector']}, {r['replica_bytes_per_vector']} |"
        )


if __name__ == "__main__":
    main()
