"""Do writes to one collection wait while another collection's clustering is swapped in?

A swap re-assigns every vector of a collection to new lists. It runs in the catch-up
thread; writes to every collection must go on meanwhile (issue 14: it used to hold the
process-wide apply lock for the whole re-assignment). In-process, on SQLite: collection
``a`` (the shared data's documents) is re-clustered again and again while a writer upserts
10-point batches into collection ``b`` (and into ``a``); every write's latency is recorded
with whether a swap was running, so both phases see the same machine load.

    .venv/bin/python bench/swap_writes.py               # all 60,631 documents, 3 swaps
    .venv/bin/python bench/swap_writes.py --n-docs 20000 --swaps 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from app.service.service import Service
from app.settings import Settings
from app.store.db import Store
from bench import debian
from worker.build import run_build

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-docs", type=int, default=None, help="default: all documents")
    p.add_argument("--swaps", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS / "swap_writes.json")
    return p.parse_args(argv)


def _points(x: np.ndarray, prefix: str) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "vector": v.tolist()} for i, v in enumerate(x)]


def _summary(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "writes": len(a),
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    data = debian.load("cos", n_docs=args.n_docs, n_train=0, n_test=0)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            embedded_worker=False,
            auto_policy=False,
            snapshot_interval_s=3600,
            catchup_interval_s=0.5,
        )
        service = Service(settings, Store(settings.resolved_database_url))
        service.start()
        service.wait_ready(60)
        for name in ("a", "b"):
            service.create_collection(
                name=name,
                dim=384,
                metric="cosine",
                nlist=None,
                algorithm="kmeans",
                default_nprobe=None,
            )
        for start in range(0, len(data.docs), 5000):
            service.index_points("a", _points(data.docs[start : start + 5000], f"a{start}-"))
        service.index_points("b", _points(data.docs[:1000], "b"))
        rng = np.random.default_rng(0)
        swapping = threading.Event()
        stop = threading.Event()
        latencies: dict[tuple[str, bool], list[float]] = {}

        def write_loop() -> None:
            i = 0
            while not stop.is_set():
                for name in ("b", "a"):
                    x = rng.standard_normal((BATCH, 384)).astype(np.float32)
                    during = swapping.is_set()
                    started = time.perf_counter()
                    service.index_points(name, _points(x, f"w{i}-"))
                    ms = (time.perf_counter() - started) * 1e3
                    latencies.setdefault((name, during and swapping.is_set()), []).append(ms)
                i += 1

        writer = threading.Thread(target=write_loop, daemon=True)
        writer.start()
        swap_s: list[float] = []
        try:
            time.sleep(2.0)  # idle phase first: the baseline
            for seed in range(args.swaps):
                run_build(service.store, "a", {"seed": seed}, lambda _: None)
                swapping.set()
                started = time.perf_counter()
                service.registry.catch_up()  # the swap, as the catch-up thread runs it
                swap_s.append(time.perf_counter() - started)
                swapping.clear()
                time.sleep(1.0)  # idle writes between swaps
        finally:
            stop.set()
            writer.join()
            service.stop()
    result = {
        "documents": len(data.docs),
        "swap_seconds": swap_s,
        "writes": {
            f"{name} {'during swap' if during else 'idle'}": _summary(ms)
            for (name, during), ms in sorted(latencies.items())
        },
    }
    swaps = ", ".join(f"{s:.2f}" for s in swap_s)
    print(f"collection a: {len(data.docs):,} documents, swaps of {swaps} s")
    print(f"{'10-point upserts':<22}{'writes':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for label, row in result["writes"].items():
        print(
            f"{label:<22}{row['writes']:>8}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['max_ms']:>9.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
