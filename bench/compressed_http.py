"""``/search/batch`` throughput over HTTP, float lists against compressed lists (issue 15).

One ``vecroute serve`` (SQLite, embedded worker, automatic policy off): the shared data is
loaded and clustered, 100-query batches are timed at the smallest nprobe reaching the
target recall@10 with float lists, then ``PATCH /collections/bench`` switches the lists to
each kind in turn and the same is measured at the smallest nprobe reaching the target
there (the kind's default re-rank). Centroid routing, as a fresh collection has.

    .venv/bin/python bench/compressed_http.py              # full data, cos, target 0.90
    .venv/bin/python bench/compressed_http.py --n-docs 20000 --target 0.95

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
)

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ({"kind": "pq"}, {"kind": "rabitq"}, {"kind": "sq8"})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variant", default="cos", choices=["cos", "ip"])
    p.add_argument("--n-docs", type=int, default=None)
    p.add_argument("--target", type=float, default=0.90)
    p.add_argument("--batches", type=int, default=30, help="100-query batches timed")
    p.add_argument("--out", type=Path, default=RESULTS / "compressed_http.json")
    return p.parse_args(argv)


def smallest(
    client: RawClient, queries: np.ndarray, gt: np.ndarray, target: float
) -> tuple[int, float]:
    for nprobe in NPROBES:
        recall = http_recall(client, queries, gt, nprobe)
        if recall >= target:
            return nprobe, recall
    return NPROBES[-1], recall


def measure(
    client: RawClient, queries: np.ndarray, gt: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    nprobe, recall = smallest(client, queries[:1000], gt[:1000], args.target)
    bodies = [
        batch_body(queries[i * SEARCH_BATCH : (i + 1) * SEARCH_BATCH], nprobe, log=False)
        for i in range(args.batches)
    ]
    info = client.json("GET", f"/collections/{NAME}")["index"]
    out = timed([lambda b=b: client.request(b) for b in bodies], SEARCH_BATCH)
    return {
        "quantization": info["quantization"],
        "bytes_per_vector": info["bytes_per_vector"],
        "nprobe": nprobe,
        "recall": round(recall, 4),
        "batch_qps": round(out["qps"], 1),
        "p50_ms": round(out["p50_ms"], 2),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ds = debian.load(args.variant, n_docs=args.n_docs, n_test=5000)
    queries = ds.test_queries[: SEARCH_BATCH * args.batches]
    gt = ds.test_gt[:, :10]
    rows = []
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
            rows.append(measure(client, queries, gt, args))
            print(rows[-1])
            for kind in KINDS:
                job = client.json(
                    "PATCH", f"/collections/{NAME}", {"quantization": kind}, expect=202
                )["job_id"]
                finish(client, job, time.monotonic() + 900)
                while (
                    client.json("GET", f"/collections/{NAME}")["index"]["quantization"]["kind"]
                    != kind["kind"]
                ):
                    time.sleep(0.1)
                rows.append(measure(client, queries, gt, args))
                print(rows[-1])
        finally:
            client.close()
            server.stop()
    base = rows[0]["batch_qps"]
    print(f"\n/search/batch (100 queries), recall@10 >= {args.target}, centroid routing, 1 client")
    head = ("nprobe", "recall", "q/s", "x float", "bytes/vec")
    print(f"{'lists':24s} " + " ".join(f"{h:>9s}" for h in head))
    for r in rows:
        label = json.dumps(r["quantization"])
        print(
            f"{label:24s} {r['nprobe']:9d} {r['recall']:9.3f} {r['batch_qps']:9.0f} "
            f"{r['batch_qps'] / base:9.2f} {r['bytes_per_vector']:9.0f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"variant": args.variant, "target": args.target, "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
