"""``/search/batch`` throughput over HTTP, float lists against compressed lists (issue 15).

One ``vecroute serve`` (SQLite, embedded worker, automatic policy off): the shared data is
loaded and clustered, and a linear router is trained by the worker from the shipped train
queries, searched over HTTP so that they are logged. For every target recall@10, 100-query
batches are timed at the smallest nprobe reaching it with float lists, centroid and learned
routing; then ``PATCH /collections/bench`` switches the lists to each kind in turn and the
same is measured there (the kind's default re-rank).

    .venv/bin/python bench/compressed_http.py              # full data, cos, targets 0.90 0.95
    .venv/bin/python bench/compressed_http.py --n-docs 20000 --targets 0.95

Writes bench/results/compressed_http.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np

from bench import debian
from bench.http import (
    NAME,
    NPROBES,
    SEARCH_BATCH,
    RawClient,
    Server,
    batch_body,
    build,
    finish,
    http_recall,
    ingest,
    timed,
    train_learned,
    train_router,
)

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ({"kind": "pq"}, {"kind": "rabitq"}, {"kind": "sq8"})
ROUTINGS = ("centroid", "learned")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variant", default="cos", choices=["cos", "ip"])
    p.add_argument("--n-docs", type=int, default=None)
    p.add_argument("--targets", type=float, nargs="+", default=[0.90, 0.95])
    p.add_argument("--train-queries", type=int, default=20_000, help="logged for the router")
    p.add_argument("--batches", type=int, default=30, help="100-query batches timed")
    p.add_argument("--out", type=Path, default=RESULTS / "compressed_http.json")
    return p.parse_args(argv)


def smallest(
    client: RawClient, queries: np.ndarray, gt: np.ndarray, target: float, routing: str
) -> tuple[int, float]:
    for nprobe in NPROBES:
        recall = http_recall(client, queries, gt, nprobe, routing)
        if recall >= target:
            return nprobe, recall
    return NPROBES[-1], recall


def measure(
    client: RawClient, ds: debian.Dataset, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """One row per routing x target: the smallest nprobe reaching it (on 1,000 test queries)
    and the q/s of ``args.batches`` batches."""
    queries = ds.test_queries[: SEARCH_BATCH * args.batches]
    gt = ds.test_gt[:, :10]
    info = client.json("GET", f"/collections/{NAME}")["index"]
    rows = []
    for routing in ROUTINGS:
        for target in args.targets:
            nprobe, recall = smallest(client, ds.test_queries[:1000], gt[:1000], target, routing)
            bodies = [
                batch_body(
                    queries[i * SEARCH_BATCH : (i + 1) * SEARCH_BATCH], nprobe, routing, log=False
                )
                for i in range(args.batches)
            ]
            out = timed([partial(client.request, b) for b in bodies], SEARCH_BATCH)
            rows.append(
                {
                    "quantization": info["quantization"],
                    "bytes_per_vector": info["bytes_per_vector"],
                    "nlist": info["nlist"],
                    "routing": routing,
                    "target": target,
                    "nprobe": nprobe,
                    "recall": round(recall, 4),
                    "batch_qps": round(out["qps"], 1),
                    "p50_ms": round(out["p50_ms"], 2),
                }
            )
            print(rows[-1])
    return rows


def serves(client: RawClient, kind: str, clustering: int | None) -> bool:
    """The server searches lists of ``kind`` (under clustering version ``clustering``)."""
    index = client.json("GET", f"/collections/{NAME}")["index"]
    fits = clustering is None or index["clustering_version"] == clustering
    return bool(index["quantization"]["kind"] == kind and fits)


def print_table(rows: list[dict[str, Any]]) -> None:
    float_qps = {
        (r["routing"], r["target"]): r["batch_qps"]
        for r in rows
        if r["quantization"]["kind"] == "none"
    }
    print("\n/search/batch (100 queries), smallest nprobe reaching the target, 1 client")
    head = ("routing", "target", "nlist", "nprobe", "recall", "q/s", "x float", "bytes/vec")
    print(f"{'lists':24s} " + " ".join(f"{h:>9s}" for h in head))
    for r in sorted(rows, key=lambda r: (r["target"], r["routing"])):
        label = json.dumps(r["quantization"])
        gain = r["batch_qps"] / float_qps[(r["routing"], r["target"])]
        print(
            f"{label:24s} {r['routing']:>9s} {r['target']:9.2f} {r['nlist']:9d} {r['nprobe']:9d} "
            f"{r['recall']:9.3f} {r['batch_qps']:9.0f} {gain:9.2f} {r['bytes_per_vector']:9.0f}"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ds = debian.load(args.variant, n_docs=args.n_docs, n_test=5000)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vecroute-bench-") as tmp:
        server = Server(Path(tmp))
        server.start()
        client = RawClient(server.port)
        try:
            metric = "cosine" if args.variant == "cos" else "ip"
            client.json(
                "POST",
                "/collections",
                {"name": NAME, "dim": ds.docs.shape[1], "metric": metric},
                expect=201,
            )
            ingest(client, ds.docs)
            build(client)
            trained = train_learned(client, ds.train_queries[: args.train_queries])
            print(f"router: {trained['router']} (activated: {trained['activated']})")
            rows += measure(client, ds, args)
            for kind in KINDS:
                job = client.json(
                    "PATCH", f"/collections/{NAME}", {"quantization": kind}, expect=202
                )["job_id"]
                done = finish(client, job, time.monotonic() + 900)["result"]
                # The kind may bring its own list count (a new clustering): served, then a
                # router trained for it from the same logged queries.
                clustering = done["reclustered_version"]
                while not serves(client, kind["kind"], clustering):
                    time.sleep(0.1)
                if clustering is not None:
                    train_router(client, time.monotonic() + 1800)
                rows += measure(client, ds, args)
        finally:
            client.close()
            server.stop()
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"variant": args.variant, "targets": args.targets, "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
