"""Learned vs centroid routing on the shared Debian data (issue 8).

Trains on the shipped train queries (the last ``--calib`` of them held out to calibrate
adaptive probing and to run the gate), evaluates on the 5,000 test queries. Recall@10 at
nprobe p is computed exactly from list ranks (``gate.neighbour_ranks``): IVF-Flat finds an
exact neighbour iff its list is probed, so no index search is needed. Train labels (and the
exact scores the ``graded`` objective weighs them by) come from ``labels.exact_search``; the
test ground truth is the shipped faiss flat top-100, the same exact search.

    .venv/bin/python bench/routing.py            # default grid (~17 min on 2 shared cores)
    .venv/bin/python bench/routing.py --quick    # ip, kmeans, nlist ~4 sqrt(n)
    .venv/bin/python bench/routing.py --full     # + nlist ~sqrt(n) everywhere + lever studies
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, bench/ would be sys.path[0] and bench/http.py would shadow the stdlib
# ``http`` (torch imports it); the repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np
import torch
from tqdm import tqdm

from app.engine import gate
from app.engine.clustering import Algorithm, auto_nlist, train_clustering
from app.engine.labels import Objective, exact_search, list_labels
from app.engine.routing import AdaptiveRule, CentroidRule, Router, RouterKind, centroid_router
from app.engine.training import TrainConfig, train_router
from bench import debian

RESULTS = Path(__file__).resolve().parent / "results"
NPROBES = gate.NPROBES
DEFAULT_NPROBE = 8


@dataclass
class Row:
    variant: str
    nlist: int
    clustering: str
    router: str
    train_seconds: float | None
    report: dict[str, Any]
    docs_at_090: float | None = None
    route_ms_per_1k: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def route_ms(router: Router, queries: np.ndarray) -> float:
    """Milliseconds to route 1,000 queries at nprobe 16 (best of 7: other jobs share the cores)."""
    best = math.inf
    for _ in range(7):
        t = time.perf_counter()
        router.route(queries, 16)
        best = min(best, time.perf_counter() - t)
    return 1000 * best * 1000 / len(queries)


def evaluate(
    router: Router, ds: debian.Dataset, test_lists: np.ndarray, sizes: np.ndarray
) -> tuple[dict[str, Any], float | None]:
    rep = gate.evaluate(router, ds.test_queries, test_lists, list_sizes=sizes)
    need = rep.nprobe_for_recall["0.90"]
    docs = None
    if need is not None:
        at = gate.evaluate(router, ds.test_queries, test_lists, nprobes=(need,), list_sizes=sizes)
        docs = at.mean_docs_scanned[0] if at.mean_docs_scanned else None
    return asdict(rep), docs


def adaptive_rows(
    base: Router,
    name: str,
    ctx: dict[str, Any],
    targets: tuple[float, ...],
    rule: AdaptiveRule = AdaptiveRule.MASS,
    margin_se: float = 0.0,
) -> list[Row]:
    """Calibrate level and temperature on the held-out train split; measure on test."""
    ds, sizes = ctx["ds"], ctx["sizes"]
    rows = []
    how = "" if rule is AdaptiveRule.MASS else f",{rule.value}"
    how += f",+{margin_se:g}se" if margin_se else ""
    for target in targets:
        cal = gate.calibrate_adaptive(
            base,
            ctx["calib_q"],
            ctx["calib_lists"],
            target,
            max_nprobe=ctx["nlist"] // 2,
            rule=rule,
            margin_se=margin_se,
        )
        probed = cal.router.route_adaptive(
            ds.test_queries, cal.level, ctx["nlist"] // 2, rule=cal.rule
        )
        counts = (probed >= 0).sum(axis=1)
        ranks = gate.neighbour_ranks(cal.router, ds.test_queries, ctx["test_lists"])
        recall = float((ranks[:, :10] < counts[:, None]).mean())
        top1 = float((ranks[:, 0] < counts).mean())
        docs = float(np.where(probed >= 0, sizes[np.maximum(probed, 0)], 0).sum(axis=1).mean())
        # Fixed nprobe the same router needs for the recall adaptive reached on test.
        fixed = gate.nprobe_for_recall(ranks, recall, 10, base.nlist)
        rows.append(
            Row(
                ctx["variant"],
                ctx["nlist"],
                ctx["algo"],
                f"adaptive-{target:.2f}({name}{how})",
                None,
                {"recall_test": recall, "top1_test": top1, "mean_probes": float(counts.mean())},
                docs,
                extra={
                    "rule": cal.rule.value,
                    "level": cal.level,
                    "margin_se": margin_se,
                    "temperature": cal.router.temperature,
                    "calib_recall": cal.recall,
                    "calib_mean_probes": cal.mean_probes,
                    "fixed_nprobe_same_recall": fixed,
                },
            )
        )
    return rows


def run_cell(
    ds: debian.Dataset,
    variant: str,
    algo: Algorithm,
    nlist: int,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    calib: tuple[np.ndarray, np.ndarray],
    levers: bool,
    bar: tqdm,
) -> list[Row]:
    t = time.perf_counter()
    clustering = train_clustering(ds.docs, nlist, algo, ds.metric, seed=0)
    cluster_s = time.perf_counter() - t
    doc_lists = clustering.assign(ds.docs)
    sizes = np.bincount(doc_lists, minlength=nlist)
    train_lists = list_labels(train[1], doc_lists)
    test_lists = list_labels(ds.test_gt[:, :10], doc_lists)
    ctx = {
        "ds": ds,
        "variant": variant,
        "sizes": sizes,
        "nlist": nlist,
        "algo": algo.value,
        "test_lists": test_lists,
        "calib_q": calib[0],
        "calib_lists": list_labels(calib[1], doc_lists),
    }
    rows: list[Row] = []

    def add(name: str, router: Router, seconds: float | None, **extra: Any) -> None:
        rep, docs = evaluate(router, ds, test_lists, sizes)
        ms = route_ms(router, ds.test_queries[:2000])
        rows.append(Row(variant, nlist, algo.value, name, seconds, rep, docs, ms, extra))

    rules = [CentroidRule.ASSIGNMENT]
    if np.any(clustering.bias != 0):
        rules.append(CentroidRule.INNER_PRODUCT)
    for rule in rules:
        add(
            f"centroid-{rule.value}",
            centroid_router(clustering, rule),
            None,
            cluster_seconds=round(cluster_s, 1),
        )

    def learn(
        name: str,
        config: TrainConfig,
        queries: np.ndarray = train[0],
        lists: np.ndarray = train_lists,
        scores: np.ndarray = train[2],
    ) -> Router:
        router = train_router(queries, lists, clustering, config, neighbour_scores=scores)
        stats = router.params["stats"]
        add(
            name,
            router,
            stats["train_seconds"],
            epochs=stats["epochs_run"],
            best_epoch=stats["best_epoch"],
            n_train=stats["n_train"],
            n_refit=stats["n_refit"],
        )
        bar.update(1)
        return router

    learn("linear-top1", TrainConfig(objective=Objective.TOP1))
    topk = learn("linear-topk", TrainConfig(objective=Objective.TOPK))
    mixed = learn("linear-mixed", TrainConfig(objective=Objective.MIXED))
    graded = learn("linear-graded", TrainConfig(objective=Objective.GRADED))
    learn("mlp-mixed", TrainConfig(kind=RouterKind.MLP, objective=Objective.MIXED))
    rows.extend(adaptive_rows(mixed, "linear-mixed", ctx, (0.90, 0.95)))
    rows.extend(adaptive_rows(topk, "linear-topk", ctx, (0.90,)))
    # Threshold rule: a probe wherever the topk router's estimated share of the top-10 is
    # worth one; the 1-SE margin keeps test recall at the target despite calibration noise.
    for margin in (0.0, 1.0):
        rows.extend(
            adaptive_rows(topk, "linear-topk", ctx, (0.90,), AdaptiveRule.THRESHOLD, margin)
        )
    best_centroid = min((r for r in rows if r.router.startswith("centroid")), key=_probes_key)
    current = centroid_router(clustering, CentroidRule(best_centroid.router.split("-", 1)[1]))
    verdict = gate.compare(current, graded, calib[0], ctx["calib_lists"], DEFAULT_NPROBE)
    rows[-1].extra["gate_vs_best_centroid"] = {
        "activate": verdict.activate,
        "reason": verdict.reason,
    }
    if levers:
        learn("linear-mixed+bias", TrainConfig(objective=Objective.MIXED, bias=True))
        for w in (0.25, 0.75):
            learn(f"linear-mixed-w{w}", TrainConfig(objective=Objective.MIXED, top1_weight=w))
        learn("linear-top1-no-refit", TrainConfig(objective=Objective.TOP1, refit=False))
        learn("linear-graded-no-refit", TrainConfig(objective=Objective.GRADED, refit=False))
        for tau in (0.3, 0.5):
            learn(
                f"linear-graded-t{tau}",
                TrainConfig(objective=Objective.GRADED, label_temperature=tau),
            )
        for n in (4500, 9000):
            learn(
                f"linear-mixed-n{n}",
                TrainConfig(objective=Objective.MIXED),
                train[0][:n],
                train_lists[:n],
                train[2][:n],
            )
    return rows


def _probes_key(row: Row) -> tuple[float, float]:
    need = row.report["nprobe_for_recall"]["0.90"]
    return (math.inf if need is None else need, -row.report["recall"][-1])


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'var':4} {'nlist':>5} {'clust':9} {'router':42} {'train_s':>7} "
        f"{'top1@1/8/16':>17}  {'R@10 @ nprobe 1/2/4/8/16/32':>36} {'np.90':>5} {'np.95':>5}"
        f" {'docs@.90':>8} {'ms/1k':>6}"
    )
    print(head)
    for r in rows:
        rep = r.report
        ts = "" if r.train_seconds is None else f"{r.train_seconds:.1f}"
        if "recall" in rep:
            t1 = "/".join(f"{rep['top1_accuracy'][i]:.3f}" for i in (0, 3, 4))
            rc = " ".join(f"{x:.3f}" for x in rep["recall"])
            np90, np95 = (rep["nprobe_for_recall"][k] for k in ("0.90", "0.95"))
        else:
            t1 = f"{rep['top1_test']:.3f}"
            rc = f"R@10 {rep['recall_test']:.3f} at mean {rep['mean_probes']:.1f} probes"
            np90 = np95 = r.extra["fixed_nprobe_same_recall"]
        docs = "" if r.docs_at_090 is None else f"{r.docs_at_090:.0f}"
        ms = "" if r.route_ms_per_1k is None else f"{r.route_ms_per_1k:.1f}"
        print(
            f"{r.variant:4} {r.nlist:5} {r.clustering:9} {r.router:42} {ts:>7} {t1:>17}  "
            f"{rc:>36} {np90!s:>5} {np95!s:>5} {docs:>8} {ms:>6}"
        )


def summary(rows: list[Row]) -> dict[str, Any]:
    """Per variant and nlist: the strongest centroid routing, the best learned, the ratio."""
    out: dict[str, Any] = {}
    for key in sorted({(r.variant, r.nlist) for r in rows}):
        cell = [r for r in rows if (r.variant, r.nlist) == key and "recall" in r.report]
        cent = min((r for r in cell if r.router.startswith("centroid")), key=_probes_key)
        learned = min((r for r in cell if not r.router.startswith("centroid")), key=_probes_key)
        adaptive = [
            r for r in rows if (r.variant, r.nlist) == key and r.router.startswith("adaptive-0.90")
        ]
        c90 = cent.report["nprobe_for_recall"]["0.90"]
        l90 = learned.report["nprobe_for_recall"]["0.90"]
        # Adaptive rows count only where their calibrated level kept recall on the test set.
        kept = [a for a in adaptive if a.report["recall_test"] >= 0.90]
        best_adaptive = min(kept, key=lambda a: a.report["mean_probes"], default=None)
        a90 = None if best_adaptive is None else best_adaptive.report["mean_probes"]
        out[f"{key[0]}/nlist={key[1]}"] = {
            "best_centroid": f"{cent.clustering}/{cent.router}",
            "centroid_nprobe_090": c90,
            "best_learned": f"{learned.clustering}/{learned.router}",
            "learned_nprobe_090": l90,
            "adaptive_mean_probes_090": {
                f"{a.clustering}/{a.router}": round(a.report["mean_probes"], 2) for a in adaptive
            },
            "half_the_probes": None if c90 is None or l90 is None else l90 <= c90 / 2,
            "best_adaptive_090": None
            if best_adaptive is None
            else {
                "router": f"{best_adaptive.clustering}/{best_adaptive.router}",
                "mean_probes": round(best_adaptive.report["mean_probes"], 2),
                "recall_test": best_adaptive.report["recall_test"],
            },
            "half_the_probes_adaptive": None if c90 is None or a90 is None else a90 <= c90 / 2,
        }
    return out


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(r.variant, r.nlist) for r in rows})
    fig, axes = plt.subplots(2, len(keys), figsize=(5 * len(keys), 8), squeeze=False)
    for j, key in enumerate(keys):
        cell = [r for r in rows if (r.variant, r.nlist) == key and "recall" in r.report]
        cent = min((r for r in cell if r.router.startswith("centroid")), key=_probes_key)
        show = [cent] + [
            r
            for r in cell
            if r.clustering == cent.clustering
            and r.router in ("linear-top1", "linear-topk", "linear-graded")
        ]
        for r in show:
            label = f"{r.clustering}/{r.router}"
            axes[0, j].plot(r.report["nprobes"], r.report["recall"], marker="o", label=label)
            if r.report["mean_docs_scanned"]:
                axes[1, j].plot(
                    r.report["mean_docs_scanned"], r.report["recall"], marker="o", label=label
                )
        for ax, xl in ((axes[0, j], "nprobe"), (axes[1, j], "documents scanned per query")):
            ax.set_xscale("log", base=2)
            ax.set_xlabel(xl)
            ax.set_ylabel("recall@10")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        axes[0, j].set_title(f"{key[0]}, nlist={key[1]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="ip, kmeans, nlist ~4 sqrt(n) only")
    ap.add_argument("--full", action="store_true", help="nlist ~sqrt(n) everywhere + levers")
    ap.add_argument("--calib", type=int, default=2000, help="train queries held out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="routing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    variants = ["ip"] if args.quick else ["ip", "cos"]
    algos = [Algorithm.KMEANS] if args.quick else list(Algorithm)
    cells = []
    for v in variants:
        for a in algos:
            cells.append((v, a, "4sqrt"))
            if args.full or (a is Algorithm.KMEANS and not args.quick):
                cells.append((v, a, "sqrt"))
    per_cell = 5 + (9 if args.full else 0)
    bar = tqdm(total=len(cells) * per_cell, desc="routers trained")
    rows: list[Row] = []
    meta: dict[str, Any] = {"args": vars(args), "label_seconds": {}}
    for v in variants:
        ds = debian.load(v)
        n_fit = len(ds.train_queries) - args.calib
        t = time.perf_counter()
        train_nb, train_scores = exact_search(ds.docs, ds.train_queries, 10, ds.metric)
        meta["label_seconds"][v] = round(time.perf_counter() - t, 1)
        train = (ds.train_queries[:n_fit], train_nb[:n_fit], train_scores[:n_fit])
        calib = (ds.train_queries[n_fit:], train_nb[n_fit:])
        for cv, algo, size in cells:
            if cv != v:
                continue
            n = len(ds.docs)
            nlist = auto_nlist(n) if size == "4sqrt" else round(math.sqrt(n))
            bar.set_postfix_str(f"{v} {algo.value} nlist={nlist}")
            rows.extend(run_cell(ds, v, algo, nlist, train, calib, args.full, bar))
    bar.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    # Rows first: a long run is never lost to a failure in the summary or the plot.
    out: dict[str, Any] = {"meta": meta, "rows": [asdict(r) for r in rows]}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=1))
    print_table(rows)
    out["summary"] = summary(rows)
    print(json.dumps(out["summary"], indent=1))
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=1))
    plot(rows, RESULTS / f"{args.out}.png")
    print(f"wrote {RESULTS / (args.out + '.json')} and .png")


if __name__ == "__main__":
    main()
