"""Does ``target_recall`` keep its promise? Measured on test queries the table never saw.

A collection's recall table is measured on held-out *logged* queries; a search asking for
``target_recall`` gets the smallest nprobe whose table entry reaches it. Here the table is
built from ``--table-queries`` queries drawn from the train split (as the worker would hold
out from its log), and the chosen nprobe is checked on the 5,000 test queries: mean
recall@10 there must reach the target. Repeated over ``--trials`` random tables, we report
how often the promise held when choosing by the mean and by the lower confidence bound
(what the service uses), and the nprobe each costs.

    .venv/bin/python bench/target_recall.py              # both variants, centroid and learned
    .venv/bin/python bench/target_recall.py --quick      # a smaller run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

# Run as a script, bench/ would come first on sys.path and bench/http.py would shadow the
# standard library's http; the repository root goes there instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from app.engine.clustering import Algorithm, auto_nlist, train_clustering
from app.engine.labels import Objective, exact_neighbours, list_labels
from app.engine.recall_table import RecallTable, measure
from app.engine.routing import Router, centroid_router
from app.engine.training import TrainConfig, train_router
from bench import debian

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = (0.80, 0.85, 0.90, 0.95, 0.98)
K = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["ip", "cos"], choices=["ip", "cos"])
    p.add_argument("--table-queries", type=int, default=1000, help="held-out queries per table")
    p.add_argument("--trials", type=int, default=20, help="random tables per routing")
    p.add_argument("--quick", action="store_true", help="10k docs, fewer queries and trials")
    p.add_argument("--out", type=Path, default=RESULTS / "target_recall.json")
    args = p.parse_args(argv)
    if args.quick:
        args.trials = min(args.trials, 5)
    return args


def _mean_choice(table: RecallTable, target: float) -> int | None:
    return next((p for p, r in enumerate(table.recall, start=1) if r >= target), None)


def run_variant(variant: str, args: argparse.Namespace, bar: tqdm) -> list[dict[str, Any]]:
    data = debian.load(variant, n_docs=10_000 if args.quick else None, n_train=None)
    metric = data.metric
    clustering = train_clustering(
        data.docs, auto_nlist(len(data.docs)), Algorithm.KMEANS, metric, seed=0
    )
    doc_lists = clustering.assign(data.docs)
    train_lists = list_labels(
        exact_neighbours(data.docs, data.train_queries, K, metric)
        if args.quick
        else data.train_gt[:, :K],
        doc_lists,
    )
    test_lists = list_labels(data.test_gt[:, :K], doc_lists)
    rng = np.random.default_rng(0)
    # The learned router trains on one half of the train split; tables come from the other.
    order = rng.permutation(len(data.train_queries))
    fit, pool = order[: len(order) // 2], order[len(order) // 2 :]
    routers: dict[str, Router] = {"centroid": centroid_router(clustering)}
    routers["learned"] = train_router(
        data.train_queries[fit],
        train_lists[fit],
        clustering,
        TrainConfig(objective=Objective.TOPK, seed=0),
    )
    rows = []
    for name, router in routers.items():
        truth = measure(router, data.test_queries, test_lists)  # the test set's own curve
        for trial in range(args.trials):
            pick = rng.choice(pool, size=min(args.table_queries, len(pool)), replace=False)
            table = measure(router, data.train_queries[pick], train_lists[pick])
            for target in TARGETS:
                for rule, nprobe in (
                    ("mean", _mean_choice(table, target)),
                    ("lower bound", table.nprobe_for(target)),
                ):
                    achieved = truth.recall[nprobe - 1] if nprobe is not None else None
                    rows.append(
                        {
                            "variant": variant,
                            "routing": name,
                            "trial": trial,
                            "target": target,
                            "rule": rule,
                            "nprobe": nprobe,
                            "test_recall": achieved,
                            "met": achieved is not None and achieved >= target,
                        }
                    )
            bar.update(1)
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, float, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["routing"], r["target"], r["rule"]), []).append(r)
    out = []
    for (variant, routing, target, rule), rs in groups.items():
        chosen = [r for r in rs if r["nprobe"] is not None]
        out.append(
            {
                "variant": variant,
                "routing": routing,
                "target": target,
                "rule": rule,
                "promise_kept": sum(r["met"] for r in rs) / len(rs),
                "mean_nprobe": float(np.mean([r["nprobe"] for r in chosen])) if chosen else None,
                "mean_test_recall": float(np.mean([r["test_recall"] for r in chosen]))
                if chosen
                else None,
                "trials": len(rs),
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(args.variants) * 2 * args.trials, desc="target recall") as bar:
        for variant in args.variants:
            rows += run_variant(variant, args, bar)
    summary = summarise(rows)
    print(
        f"\n{'variant':8}{'routing':10}{'target':>7}  {'rule':12}{'kept':>6}{'nprobe':>8}"
        f"{'test recall':>13}"
    )
    for s in summary:
        nprobe = f"{s['mean_nprobe']:.1f}" if s["mean_nprobe"] is not None else "-"
        recall = f"{s['mean_test_recall']:.3f}" if s["mean_test_recall"] is not None else "-"
        print(
            f"{s['variant']:8}{s['routing']:10}{s['target']:>7.2f}  {s['rule']:12}"
            f"{s['promise_kept']:>6.0%}{nprobe:>8}{recall:>13}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: str(v) for k, v in vars(args).items()}
    args.out.write_text(json.dumps({"config": config, "summary": summary, "rows": rows}, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
