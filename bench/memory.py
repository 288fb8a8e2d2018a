"""Peak and resident memory of the jobs and of loading a collection, each in a new process.

A SQLite store is filled with random vectors (default 200,000 x 384, cosine) and logged
queries, then each step runs in a process of its own and reports its peak resident size
(``VmHWM``) and what it holds after the step (``VmRSS``), against its size once its imports
are done:

- ``build``: the build job (clustering, and the recall table from the logged queries);
- ``train-router``: the router training job (torch imported before the start is read, as
  the job's child process has it);
- ``load``: what ``vecroute serve`` does at start-up without a snapshot: every collection
  read from the store into its index;
- ``snapshot write``: then, in the same process, the snapshot a server writes of a changed
  collection (its peak counted from its start: ``/proc/self/clear_refs``);
- ``load (snapshot)``: a new process loading that snapshot;
- ``shard load``: a shard replica (app/cluster/replica.py, in-process, no Ray) loading every
  other list from the store, as a cluster node does (the rows labelled first, as placing
  the clustering does; the peak counted from after that).

    .venv/bin/python bench/memory.py                      # 200,000 x 384, a few minutes
    .venv/bin/python bench/memory.py --n 50000 --dim 128  # smaller
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from app.store.collections import create_collection
from app.store.db import Store
from app.store.migrate import upgrade
from app.store.points import upsert_points
from app.store.query_log import LoggedQuery, append_queries
from app.store.seq import next_seq

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "docs"
STEPS = ("build", "train-router", "load", "load (snapshot)", "shard load")
BLOCK = 20_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=200_000, help="points")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--metric", default="cosine", choices=["cosine", "ip", "l2"])
    p.add_argument("--queries", type=int, default=2000, help="logged queries")
    p.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    p.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # one step, in a child
    p.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` size (``VmRSS``, ``VmHWM``) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def fill(url: str, args: argparse.Namespace) -> None:
    """The collection and its logged queries, random and seeded."""
    store = Store(url)
    upgrade(store)
    record = create_collection(
        store, name=NAME, dim=args.dim, metric=args.metric, nlist=None, algorithm="kmeans"
    )
    assert record is not None
    rng = np.random.default_rng(0)
    for start in range(0, args.n, BLOCK):
        n = min(BLOCK, args.n - start)
        vectors = rng.standard_normal((n, args.dim), dtype=np.float32)
        names = [str(i) for i in range(start, start + n)]
        with store.write() as session:
            upsert_points(session, record.id, next_seq(session), names, vectors, [None] * n)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    append_queries(store, [LoggedQuery(record.id, q, 10) for q in queries])


def run_step(step: str, data_dir: Path) -> dict[str, dict[str, float]]:
    """One step in this (new) process: its size once its imports are done, its peak and
    end sizes, and its seconds."""
    from app.main import build_service
    from app.settings import Settings
    from worker.build import run_build
    from worker.train_router import TrainingPlan, run_train_router

    if step == "train-router":
        import torch  # noqa: F401  (the job's child process holds it before the job starts)
    url = f"sqlite:///{data_dir / 'store.sqlite'}"
    if step == "shard load":
        return {step: shard_load(url)}
    start = status_mb("VmRSS")
    started = time.perf_counter()
    if step == "build":
        run_build(Store(url), NAME, {}, lambda _: None)
    elif step == "train-router":
        run_train_router(Store(url), NAME, {}, lambda _: None, TrainingPlan(min_queries=100))
    else:
        settings = Settings(database_url=url, data_dir=data_dir, embedded_worker=False)
        service = build_service(settings)
        service.start()  # loads in its thread, as the server does
        service.wait_ready(timeout_s=3600)
        if step == "load":  # then the snapshot the next step loads, measured on its own
            loaded = sizes(start, started)
            Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
            start, started = status_mb("VmRSS"), time.perf_counter()
            assert service.runtime.snapshot_all(force=True) == 1, "no snapshot written"
            written = sizes(start, started)
            service.stop()
            return {"load": loaded, "snapshot write": written}
        loaded = sizes(start, started)
        registry = service.registry
        record = registry.get(NAME).record
        # The snapshot was taken (what rejects it also makes the load read the store).
        assert registry.snapshots.load(record, registry.indexes) is not None, "no snapshot"
        service.stop()
        return {step: loaded}
    return {step: sizes(start, started)}


def shard_load(url: str) -> dict[str, float]:
    """A replica of every other list of the built clustering, loaded from the store."""
    from app.cluster.replica import ShardReplica, ShardSpec
    from app.engine.metric import Metric, prepare
    from app.heap import release_free_memory
    from app.store.collections import get_collection
    from app.store.point_lists import relabel
    from app.store.versions import load_clustering

    store = Store(url)
    with store.read() as session:
        record = get_collection(session, NAME)
        assert record is not None and record.clustering_version is not None, "not built"
        clustering = load_clustering(session, record.id, record.clustering_version)
    metric = Metric(record.metric)  # as app.cluster.sharded.label_lists (not imported: Ray)

    def assign(vectors: np.ndarray) -> np.ndarray:
        return clustering.assign(prepare(vectors, metric, record.dim))

    relabel(store, record.id, clustering.version, record.dim, assign)
    spec = ShardSpec(
        url,
        record.id,
        record.dim,
        metric,
        clustering.version,
        shard=0,
        lists=tuple(range(0, clustering.nlist, 2)),
    )
    store.dispose()
    release_free_memory()
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
    start, started = status_mb("VmRSS"), time.perf_counter()
    replica = ShardReplica(spec)
    loaded = sizes(start, started)
    loaded["points"] = replica.shard.count
    loaded["index_mb"] = replica.shard.index.memory_bytes() / 2**20  # its entries' payload
    replica.close()
    return loaded


def sizes(start: float, started: float) -> dict[str, float]:
    return {
        "start_mb": start,
        "peak_mb": status_mb("VmHWM"),
        "end_mb": status_mb("VmRSS"),
        "seconds": time.perf_counter() - started,
    }


def measured_steps(data_dir: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """The store filled in ``data_dir``, then each step's sizes from a process of its own."""
    fill(f"sqlite:///{data_dir / 'store.sqlite'}", args)
    steps: dict[str, dict[str, float]] = {}
    for step in STEPS:
        command = [sys.executable, __file__, "--step", step, "--dir", str(data_dir)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        steps |= json.loads(out.strip().splitlines()[-1])
        print(f"{step}: done", flush=True)
    return steps


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.step is not None:
        print(json.dumps(run_step(args.step, args.dir)))
        return {}
    data_dir = Path(tempfile.mkdtemp(prefix="vecroute-memory-"))
    try:
        steps = measured_steps(data_dir, args)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    vectors_mb = args.n * args.dim * 4 / 2**20
    report = {"n": args.n, "dim": args.dim, "metric": args.metric, "vectors_mb": vectors_mb}
    report["steps"] = steps
    print(
        f"\n{args.n} x {args.dim} {args.metric} vectors ({vectors_mb:.0f} MB), "
        f"{args.queries} logged queries; sizes in MB, from /proc/self/status"
    )
    print(f"\n{'step':<18}{'at start':>10}{'peak':>8}{'peak - start':>14}{'after':>8}{'s':>7}")
    for step, s in steps.items():
        print(
            f"{step:<18}{s['start_mb']:>10.0f}{s['peak_mb']:>8.0f}"
            f"{s['peak_mb'] - s['start_mb']:>14.0f}{s['end_mb']:>8.0f}{s['seconds']:>7.1f}"
        )
    shard = steps["shard load"]
    print(f"shard load: {shard['points']:.0f} points, {shard['index_mb']:.0f} MB of entries")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
