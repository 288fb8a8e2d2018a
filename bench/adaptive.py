"""Adaptive probing over HTTP: ``target_recall`` with a learned router against the best
fixed centroid routing at the same achieved recall, on the shared data (cos and ip).

For each variant: a server on SQLite, every document ingested, the IVF built (nlist auto,
~4 sqrt(n)), the train queries searched (and so logged), a router trained through
``POST /train-router`` (the worker calibrates adaptive probing on held-out logged queries).
Then, on the test queries the router never saw:

- learned adaptive: ``target_recall`` 0.90 and 0.95: achieved recall@10, mean probes and
  documents scanned per query (the responses' ``nprobe`` and ``scanned``), single-query q/s;
- centroid: the smallest fixed nprobe whose recall@10 reaches what adaptive achieved, with
  its documents scanned and q/s (and the same for the learned router at fixed nprobe).

The goal (issue 16): half the documents scanned for the same recall, on both variants.

    .venv/bin/python bench/adaptive.py                     # both variants, all documents
    .venv/bin/python bench/adaptive.py --variants cos --n-docs 20000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from app.engine.evaluation import recall_at_k
from bench import debian
from bench.http import NAME, SEARCH_BATCH, K, RawClient, Server, build, encode, finish, ingest

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = (0.90, 0.95)
METRICS = {"cos": "cosine", "ip": "ip"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["cos", "ip"], choices=sorted(METRICS))
    p.add_argument("--n-docs", type=int, default=None, help="default: all documents")
    p.add_argument("--objective", default="graded", help="the router's training objective")
    p.add_argument("--timed", type=int, default=2000, help="single queries timed per row")
    p.add_argument("--out", type=Path, default=RESULTS / "adaptive.json")
    return p.parse_args(argv)


def search_all(
    client: RawClient, queries: np.ndarray, options: dict[str, Any]
) -> tuple[np.ndarray, float, float]:
    """(found ids, mean probes, mean documents scanned) of batched searches."""
    found, probes, scanned = [], 0.0, 0.0
    for start in range(0, len(queries), SEARCH_BATCH):
        chunk = queries[start : start + SEARCH_BATCH]
        body = {"collection": NAME, "vectors": chunk, "k": K, "log": False, **options}
        out = client.json("POST", "/search/batch", body)
        found.append([[int(h["id"]) for h in r["hits"]] for r in out["results"]])
        probes += out["nprobe"] * len(chunk)
        scanned += out["scanned"] * len(chunk)
    ids = np.array([row + [-1] * (K - len(row)) for rows in found for row in rows])
    return ids, probes / len(queries), scanned / len(queries)


def single_qps(client: RawClient, queries: np.ndarray, options: dict[str, Any]) -> float:
    bodies = [
        encode(
            "POST",
            "/search",
            orjson.dumps(
                {"collection": NAME, "vector": q, "k": K, "log": False, **options},
                option=orjson.OPT_SERIALIZE_NUMPY,
            ),
        )
        for q in queries
    ]
    started = time.perf_counter()
    for raw in bodies:
        status, body = client.request(raw)
        assert status == 200, body
    return len(bodies) / (time.perf_counter() - started)


def row(
    client: RawClient, data: debian.Dataset, options: dict[str, Any], timed: int
) -> dict[str, Any]:
    ids, probes, scanned = search_all(client, data.test_queries, options)
    return {
        "options": options,
        "recall": recall_at_k(ids, data.test_gt, K),
        "mean_nprobe": probes,
        "mean_scanned": scanned,
        "qps": single_qps(client, data.test_queries[:timed], options),
    }


def matching_fixed(
    client: RawClient, data: debian.Dataset, routing: str, recall: float, nlist: int, timed: int
) -> dict[str, Any]:
    """The smallest fixed nprobe of ``routing`` whose test recall reaches ``recall``."""
    lo, hi = 1, nlist  # recall grows with nprobe: bisect for the first that reaches it
    seen: dict[int, float] = {}
    while lo < hi:
        mid = (lo + hi) // 2
        ids, _, _ = search_all(client, data.test_queries, {"routing": routing, "nprobe": mid})
        seen[mid] = recall_at_k(ids, data.test_gt, K)
        lo, hi = (lo, mid) if seen[mid] >= recall else (mid + 1, hi)
    return row(client, data, {"routing": routing, "nprobe": lo}, timed)


def run_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    data = debian.load(variant, n_docs=args.n_docs)
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        server.start()
        client = RawClient(server.port)
        try:
            client.json(
                "POST",
                "/collections",
                {"name": NAME, "dim": 384, "metric": METRICS[variant]},
                expect=201,
            )
            ingest(client, data.docs)
            nlist = build(client)["info"]["index"]["nlist"]
            for start in range(0, len(data.train_queries), SEARCH_BATCH):  # logged: the log
                chunk = data.train_queries[start : start + SEARCH_BATCH]
                client.json("POST", "/search/batch", {"collection": NAME, "vectors": chunk, "k": K})
            started = time.perf_counter()
            job = client.json(
                "POST",
                "/train-router",
                {"collection": NAME, "kind": "linear", "objective": args.objective},
                expect=202,
            )["job_id"]
            trained = finish(client, job, time.monotonic() + 3600)["result"]
            train_s = time.perf_counter() - started
            if not trained["activated"]:
                raise RuntimeError(f"the router was not activated: {trained['reason']}")
            while client.json("GET", f"/collections/{NAME}")["router"]["version"] is None:
                time.sleep(0.05)  # applied by the server's next catch-up
            rows = []
            for target in TARGETS:
                adaptive = row(client, data, {"target_recall": target}, args.timed)
                reached = adaptive["recall"]
                centroid = matching_fixed(client, data, "centroid", reached, nlist, args.timed)
                learned = matching_fixed(client, data, "learned", reached, nlist, args.timed)
                rows.append(
                    {
                        "target": target,
                        "adaptive": adaptive,
                        "centroid": centroid,
                        "learned_fixed": learned,
                        "scanned_ratio": adaptive["mean_scanned"] / centroid["mean_scanned"],
                    }
                )
        finally:
            client.close()
            server.stop()
    return {
        "variant": variant,
        "documents": len(data.docs),
        "test_queries": len(data.test_queries),
        "nlist": nlist,
        "train_seconds": train_s,
        "calibration": trained["adaptive"],
        "rows": rows,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    head = (
        f"{'var':<4}{'target':>7}  {'routing':<22}{'R@10':>7}{'nprobe':>8}{'scanned':>9}{'q/s':>7}"
    )
    print(head)
    for r in results:
        for line in r["rows"]:
            for name, key in (
                ("learned adaptive", "adaptive"),
                ("learned fixed nprobe", "learned_fixed"),
                ("centroid fixed nprobe", "centroid"),
            ):
                x = line[key]
                print(
                    f"{r['variant']:<4}{line['target']:>7.2f}  {name:<22}{x['recall']:>7.3f}"
                    f"{x['mean_nprobe']:>8.1f}{x['mean_scanned']:>9.0f}{x['qps']:>7.0f}"
                )
            print(f"{'':<13}documents scanned, adaptive / centroid: {line['scanned_ratio']:.2f}")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    results = [run_variant(v, args) for v in args.variants]
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
