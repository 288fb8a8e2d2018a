"""Shards a query touches (``shards_probed``): learned vs centroid routing, co-probe vs
contiguous vs random placement (issue 19).

On the shared Debian data (k-means, ~4 sqrt(n) lists): each routing probes the smallest
fixed nprobe reaching test recall@10 ``--targets``; the co-probe placement is built from
the *train* queries' probe lists under that routing (the logged queries a deployment has),
then every placement is measured on the 5,000 *test* queries. Balance columns: the largest
shard over the mean, in points and in probe load (vectors scanned by the test queries).
No Ray here: placement is a function of the lists probed, so this measures it exactly.

    .venv/bin/python bench/placement.py                 # cos, targets .90 .95, S = 2 4 8 16
    .venv/bin/python bench/placement.py --variant ip --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, bench/ would be sys.path[0] and bench/http.py would shadow the stdlib
# ``http`` (torch imports it); the repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np
import torch

from app.cluster.placement import (
    Placement,
    contiguous_placement,
    coprobe_placement,
    probe_load,
    random_placement,
)
from app.engine import gate
from app.engine.clustering import Algorithm, auto_nlist, train_clustering
from app.engine.labels import Objective, exact_search, list_labels
from app.engine.metric import prepare
from app.engine.routing import Router, centroid_router
from app.engine.training import TrainConfig, train_router
from bench import debian

RESULTS = Path(__file__).resolve().parent / "results"


def balance(placement: Placement, weights: np.ndarray) -> float:
    per_shard = np.bincount(placement.shard_of, weights=weights, minlength=placement.shards)
    return float(per_shard.max() / per_shard.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--variant", default="cos", choices=["cos", "ip"])
    ap.add_argument("--targets", type=float, nargs="+", default=[0.90, 0.95])
    ap.add_argument("--shards", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--quick", action="store_true", help="5,000 train queries, 1,000 test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="placement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ds = debian.load(args.variant)
    train_q, test_q, test_gt = ds.train_queries, ds.test_queries, ds.test_gt
    if args.quick:
        train_q, test_q, test_gt = train_q[:5000], test_q[:1000], test_gt[:1000]
    started = time.perf_counter()
    nlist = auto_nlist(len(ds.docs))
    clustering = train_clustering(ds.docs, nlist, Algorithm.KMEANS, ds.metric, seed=0)
    doc_lists = clustering.assign(prepare(ds.docs, ds.metric))
    sizes = np.bincount(doc_lists, minlength=nlist)
    train_nb, train_scores = exact_search(ds.docs, train_q, 10, ds.metric)
    learned = train_router(
        train_q,
        list_labels(train_nb, doc_lists),
        clustering,
        TrainConfig(objective=Objective.GRADED),
        neighbour_scores=train_scores,
    )
    routers: dict[str, Router] = {"centroid": centroid_router(clustering), "learned": learned}
    test_lists = list_labels(test_gt[:, :10], doc_lists)
    qtrain, qtest = prepare(train_q, ds.metric), prepare(test_q, ds.metric)
    rows: list[dict[str, Any]] = []
    for target in args.targets:
        for name, router in routers.items():
            ranks = gate.neighbour_ranks(router, qtest, test_lists)
            nprobe = gate.nprobe_for_recall(ranks, target, 10, nlist) or nlist
            logged, unseen = router.route(qtrain, nprobe), router.route(qtest, nprobe)
            load = probe_load(unseen, sizes)
            for shards in args.shards:
                t = time.perf_counter()
                coprobe = coprobe_placement(logged, sizes, shards)
                build_s = time.perf_counter() - t
                for placement in (
                    coprobe,
                    contiguous_placement(nlist, shards),
                    random_placement(nlist, shards, seed=0),
                ):
                    rows.append(
                        {
                            "target": target,
                            "routing": name,
                            "nprobe": nprobe,
                            "shards": shards,
                            "placement": placement.method,
                            "shards_probed": round(float(placement.touched(unseen).mean()), 3),
                            "points_max_over_mean": round(balance(placement, sizes), 3),
                            "load_max_over_mean": round(balance(placement, load), 3),
                            "build_seconds": round(build_s, 2) if placement is coprobe else None,
                        }
                    )
    meta = {
        "args": vars(args),
        "docs": len(ds.docs),
        "nlist": nlist,
        "train_queries": len(train_q),
        "test_queries": len(test_q),
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{args.out}.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print_table(rows, meta)
    print(f"wrote {path}")


def print_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    print(
        f"{meta['docs']:,} docs, {meta['nlist']} lists; placement from "
        f"{meta['train_queries']:,} train queries, measured on {meta['test_queries']:,} test"
    )
    print(
        "| target | routing | nprobe | S | shards_probed: co-probe / contiguous / random "
        "| co-probe balance (points, load) |"
    )
    print("|---|---|---|---|---|---|")
    cells: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for r in rows:
        key = (r["target"], r["routing"], r["nprobe"], r["shards"])
        cells.setdefault(key, {})[r["placement"]] = r
    for (target, routing, nprobe, shards), by in cells.items():
        co, cont, rand = by["coprobe"], by["contiguous"], by["random"]
        print(
            f"| {target:.2f} | {routing} | {nprobe} | {shards} | "
            f"**{co['shards_probed']:.2f}** / {cont['shards_probed']:.2f} / "
            f"{rand['shards_probed']:.2f} | "
            f"{co['points_max_over_mean']:.2f}, {co['load_max_over_mean']:.2f} |"
        )


if __name__ == "__main__":
    main()
