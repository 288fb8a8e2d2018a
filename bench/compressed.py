"""Compressed lists with exact re-ranking against float IVF, ScaNN and hnswlib (issue 15).

On the full shared data (60,631 documents, both variants), one search thread: for every
quantization kind x routing (centroid, a learned ``graded`` linear router trained on the
shipped train queries) the recall@10-vs-queries/s curve of single-query calls (one query
per ``VectorIndex.search``, as the API makes them) and of batches, over a grid of nprobe x
rerank; resident bytes per vector (the engine's estimate beside the measured heap and RSS
growth); build time. ScaNN (tree + asymmetric hashing + reorder, its recommended setup) and
hnswlib are measured in the same run on the same queries.

    .venv/bin/pip install -e '.[bench]'        # scann, hnswlib
    .venv/bin/python bench/compressed.py       # both variants, ~25 min on 2 shared cores
    .venv/bin/python bench/compressed.py --quick   # cos only, a smaller grid
    .venv/bin/python bench/compressed.py --kinds none cat-sign64 cat-lattice   # some kinds
    nice -n 10 .venv/bin/python bench/compressed.py --variants cos --kinds none cat-sign64 \
        cat-sign128 cat-lattice pq16 pq32 pq48 --out bench/results/compressed_catalyzer.json

Each kind is clustered into the list count the product picks for it (``codes.preferred_nlist``:
about sqrt(n) for pq and rabitq, 4 sqrt(n) otherwise), with its own learned router; ScaNN
runs at sqrt(n) leaves (its own advice) and at 4 sqrt(n). Labels name the count:
``engine-rabitq/246/float32/learned``, ``scann/246``. On ip, pq re-ranks up to its default 300.

Codes of 24 bytes or fewer (the catalyzer kinds, and pq16/pq32/pq48: product codes of the
catalyzer's sizes, its equal-bytes reference) are timed at deeper re-ranks (50-800).

The catalyzer kinds first train their catalyzer (torch, ~3 min each with the defaults; the
"train s" column); ``--catalyzer-epochs`` trades that time for code quality.

Writes bench/results/compressed.json and compressed.png (recall vs single-query q/s).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import mmap
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script, bench/ would be sys.path[0] and bench/http.py would shadow the stdlib
# ``http`` (torch imports it); the repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import faiss
import numpy as np

from app.engine.clustering import Algorithm, Clustering, auto_nlist, train_clustering
from app.engine.codes import CATALYZER_KINDS, CodeKind, Quantization, preferred_nlist
from app.engine.evaluation import recall_at_k
from app.engine.exact import ExactStorage
from app.engine.ivf import VectorIndex
from app.engine.labels import Objective, exact_search, list_labels
from app.engine.metric import Metric, prepare
from app.engine.routing import Router
from app.engine.training import TrainConfig, train_router
from bench import debian
from bench.engine import heap_bytes
from worker.train_catalyzer import CatalyzerConfig, Quantizer, train_catalyzer

RESULTS = Path(__file__).resolve().parent / "results"
K = 10
KINDS: dict[str, dict[str, Any]] = {
    "none": {"kind": "none"},
    "sq8": {"kind": "sq8"},
    "pq96": {"kind": "pq", "m": 96},
    "pq48": {"kind": "pq", "m": 48},
    # product codes as small as the catalyzer's (8 and 16 bytes): the equal-bytes reference
    "pq16": {"kind": "pq", "m": 16},
    "pq32": {"kind": "pq", "m": 32},
    "rabitq": {"kind": "rabitq"},
    # paper 003's catalyzer, trained here first (worker/train_catalyzer.py, torch)
    "cat-sign64": {"kind": "catalyzer-sign", "bits": 64},
    "cat-sign128": {"kind": "catalyzer-sign", "bits": 128},
    "cat-lattice": {"kind": "catalyzer-lattice", "bits": 64},
}
# 24 and 40 probes, 30 and 70 candidates: the cheapest settings reaching recall@10 .90 and
# .95 on cos with a learned router lie there (rabitq 16/30, pq96 24/50, float 40 for .95).
NPROBES = (4, 8, 16, 24, 32, 40, 64, 128)
RERANKS = (20, 30, 50, 70, 100)
# Codes of 24 bytes or fewer rank coarsely: their curves need deeper re-ranks.
COARSE_KINDS = frozenset({"cat-sign64", "cat-sign128", "cat-lattice", "pq16", "pq32", "pq48"})
COARSE_RERANKS = (50, 100, 200, 400, 800)
# Product codes on raw inner product re-rank 300 by default (codes.DEFAULT_RERANK_PQ_IP).
PQ_IP_RERANKS = (50, 100, 200, 300)
# ScaNN's leaves: its own recommendation (about sqrt(n)) and the engine's float lists' count.
SCANN_LEAVES_PER_ROOT = (1.0, 4.0)


@dataclass(frozen=True)
class Lists:
    """One clustering of the documents and the routers searched over it."""

    clustering: Clustering
    routers: dict[str, Router | None]
    cluster_seconds: float
    router_seconds: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["cos", "ip"], choices=["cos", "ip"])
    p.add_argument("--queries", type=int, default=500, help="test queries timed (of 5,000)")
    p.add_argument("--quick", action="store_true", help="cos only, fewer grid points")
    p.add_argument(
        "--catalyzer-epochs", type=int, default=10, help="training epochs of the catalyzer kinds"
    )
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    p.add_argument("--out", type=Path, default=RESULTS / "compressed.json")
    args = p.parse_args(argv)
    if args.quick:
        args.variants = ["cos"]
    return args


def rss() -> dict[str, int]:
    """Resident anonymous and file-backed bytes of this process (/proc/self/status)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out


def single_qps(
    search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray
) -> tuple[float, np.ndarray]:
    """(single-query calls per second, found ids); best of two passes (shared machine)."""
    found = np.empty((len(queries), K), np.int64)
    best = math.inf
    for _ in range(2):
        started = time.perf_counter()
        for i in range(len(queries)):
            found[i] = search(queries[i : i + 1])[0]
        best = min(best, time.perf_counter() - started)
    return len(queries) / best, found


def batch_qps(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray) -> float:
    best = math.inf
    for _ in range(2):
        started = time.perf_counter()
        search(queries)
        best = min(best, time.perf_counter() - started)
    return len(queries) / best


def learned_router(ds: debian.Dataset, clustering: Any) -> tuple[Router, float]:
    started = time.perf_counter()
    ids, scores = exact_search(ds.docs, ds.train_queries, K, ds.metric)
    lists = list_labels(ids, clustering.assign(ds.docs))
    router = train_router(
        ds.train_queries,
        lists,
        clustering,
        TrainConfig(objective=Objective.GRADED),
        neighbour_scores=scores,
    )
    return router, time.perf_counter() - started


def train_lists(ds: debian.Dataset, nlist: int) -> Lists:
    started = time.perf_counter()
    clustering = train_clustering(ds.docs, nlist, Algorithm.KMEANS, ds.metric, seed=0)
    cluster_s = time.perf_counter() - started
    router, train_s = learned_router(ds, clustering)
    return Lists(clustering, {"centroid": None, "learned": router}, cluster_s, train_s)


class ListsByCount:
    """A variant's clusterings (and learned routers) at the list count the product picks
    for each kind (``codes.preferred_nlist``), trained once per count."""

    def __init__(self, ds: debian.Dataset, variant: str) -> None:
        self.ds, self.variant = ds, variant
        self.built: dict[int, Lists] = {}

    def __call__(self, q: Quantization) -> Lists:
        nlist = preferred_nlist(q, len(self.ds.docs))
        if nlist not in self.built:
            lists = self.built[nlist] = train_lists(self.ds, nlist)
            print(
                f"{self.variant}: {len(self.ds.docs)} docs, {nlist} lists, clustered in "
                f"{lists.cluster_seconds:.0f}s, learned router trained in "
                f"{lists.router_seconds:.0f}s"
            )
        return self.built[nlist]


def engine_rows(
    ds: debian.Dataset,
    lists_for: Callable[[Quantization], Lists],
    queries: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows, memory = [], []
    ids = np.arange(len(ds.docs), dtype=np.int64)
    for name in args.kinds:
        q = Quantization.parse(KINDS[name], ds.docs.shape[1])
        train_s = None
        if q.kind in CATALYZER_KINDS:
            started = time.perf_counter()
            q = q.with_catalyzer(catalyzer_for(q, ds, ds.metric, args))
            train_s = round(time.perf_counter() - started, 1)
            print(f"  {name}: catalyzer trained in {train_s}s")
        storages = [ExactStorage.FLOAT32] if not q.compressed else list(ExactStorage)
        lists = lists_for(q)  # the list count the product picks for this kind
        clustering, routers = lists.clustering, lists.routers
        for storage in storages:
            gc.collect()
            heap0, rss0 = heap_bytes(), rss()
            started = time.perf_counter()
            index = VectorIndex(ds.docs.shape[1], ds.metric, clustering, q, storage)
            index.upsert(ids, ds.docs)
            build_s = time.perf_counter() - started
            for i in range(0, len(queries), 100):  # touch what searches touch
                index.search(queries[i : i + 100], K, nprobe=32)
            heap1, rss1 = heap_bytes(), rss()
            n = len(ds.docs)
            paged = paged_in(index, queries) if storage is ExactStorage.MMAP else None
            memory.append(
                {
                    "kind": name,
                    "storage": storage.value,
                    "nlist": clustering.nlist,
                    "build_seconds": round(build_s, 2),
                    "catalyzer_train_seconds": train_s,
                    "bytes_per_vector_reported": round(index.bytes_per_vector(), 1),
                    "heap_growth_per_vector": round((heap1 - heap0) / n, 1),
                    "rss_anon_growth_per_vector": round((rss1["RssAnon"] - rss0["RssAnon"]) / n, 1),
                    "rss_file_growth_per_vector": round((rss1["RssFile"] - rss0["RssFile"]) / n, 1),
                    "mmap_paged_in_per_vector": paged,
                }
            )
            print(f"  {name:7s} {storage.value:8s} built in {build_s:.1f}s, {memory[-1]}")
            if storage is ExactStorage.FLOAT32 or storage is ExactStorage.MMAP:
                found = curve(index, name, storage, routers, queries, truth, args)
                # the label names the list count: engine-<kind>/<nlist>, as scann/<leaves>
                rows.extend(
                    r | {"system": f"{r['system']}/{clustering.nlist}", "nlist": clustering.nlist}
                    for r in found
                )
            del index
    return rows, memory


def catalyzer_for(
    q: Quantization, ds: debian.Dataset, metric: Metric, args: argparse.Namespace
) -> Any:
    """A catalyzer trained as the quantize job trains it (defaults; ``--catalyzer-epochs``)."""
    quantizer = Quantizer.SIGN if q.kind is CodeKind.CATALYZER_SIGN else Quantizer.LATTICE
    assert q.bits is not None
    config = CatalyzerConfig(quantizer=quantizer, bits=q.bits, epochs=args.catalyzer_epochs)
    return train_catalyzer(prepare(ds.docs, metric, ds.docs.shape[1]), config)


def paged_in(index: VectorIndex, queries: np.ndarray) -> float:
    """File pages of the memory-mapped exact vectors resident after the timed searches,
    per vector: the pages written at build time are dropped from this process first
    (they stay in the page cache), so what comes back is what re-ranking reads."""
    data: Any = index._state.exact._data  # type: ignore[union-attr]  # over an mmap.mmap
    data.base.flush()
    data.base.madvise(mmap.MADV_DONTNEED)
    before = rss()["RssFile"]
    for i in range(len(queries)):
        index.search(queries[i : i + 1], K, nprobe=32)
    return round((rss()["RssFile"] - before) / index.count, 1)


def curve(
    index: VectorIndex,
    name: str,
    storage: ExactStorage,
    routers: dict[str, Router | None],
    queries: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    rows = []
    reranks: tuple[int | None, ...] = (None,) if not index.coded else RERANKS
    if name in COARSE_KINDS:
        reranks = COARSE_RERANKS
    elif index.quantization.kind is CodeKind.PQ and index.metric is Metric.IP:
        reranks = PQ_IP_RERANKS
    if args.quick and index.coded:
        reranks = (100, 200) if name in COARSE_KINDS else (50, 100)
    nprobes = NPROBES if not args.quick else (8, 16, 32, 64)
    if storage is ExactStorage.MMAP:  # the memory-lean setup: its curve at the default re-rank
        reranks = (None,)
    for routing, router in routers.items():
        for nprobe in nprobes:
            for rerank in reranks:

                def one(
                    x: np.ndarray,
                    nprobe: int = nprobe,
                    rerank: int | None = rerank,
                    router: Router | None = router,
                ) -> np.ndarray:
                    return index.search(x, K, nprobe=nprobe, router=router, rerank=rerank).ids

                qps, found = single_qps(one, queries)
                rows.append(
                    {
                        "system": f"engine-{name}",
                        "storage": storage.value,
                        "routing": routing,
                        "nprobe": nprobe,
                        "rerank": rerank,
                        "recall": round(recall_at_k(found, truth, K), 4),
                        "single_qps": round(qps, 1),
                        "batch_qps": round(batch_qps(one, queries), 1),
                    }
                )
    return rows


def scann_rows(
    ds: debian.Dataset, queries: np.ndarray, truth: np.ndarray
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """ScaNN at about sqrt(n) leaves (its documentation's advice) and at 4 sqrt(n) (the
    float lists' count): system ``scann/<leaves>``."""
    import scann

    rows, info = [], {}
    for per_root in SCANN_LEAVES_PER_ROOT:
        leaves_total = auto_nlist(len(ds.docs), per_root)
        gc.collect()
        heap0 = heap_bytes()
        started = time.perf_counter()
        searcher = (
            scann.scann_ops_pybind.builder(ds.docs, K, "dot_product")
            .tree(
                num_leaves=leaves_total,
                num_leaves_to_search=32,
                training_sample_size=len(ds.docs),
            )
            .score_ah(2, anisotropic_quantization_threshold=0.2)
            .reorder(100)
            .build()
        )
        build_s = time.perf_counter() - started
        system = f"scann/{leaves_total}"
        info[system] = {
            "build_seconds": round(build_s, 2),
            "heap_growth_per_vector": round((heap_bytes() - heap0) / len(ds.docs), 1),
        }
        for leaves in NPROBES:  # the engine's probe grid
            for reorder in (50, 100, 200):

                def one(
                    x: np.ndarray, leaves: int = leaves, reorder: int = reorder, s: Any = searcher
                ) -> np.ndarray:
                    if len(x) == 1:
                        return s.search(x[0], K, reorder, leaves)[0][None]
                    return s.search_batched(x, K, reorder, leaves)[0]

                qps, found = single_qps(one, queries)
                rows.append(
                    {
                        "system": system,
                        "nlist": leaves_total,
                        "nprobe": leaves,
                        "rerank": reorder,
                        "recall": round(recall_at_k(found, truth, K), 4),
                        "single_qps": round(qps, 1),
                        "batch_qps": round(batch_qps(one, queries), 1),
                    }
                )
        del searcher
    return rows, info


def hnsw_rows(
    ds: debian.Dataset, queries: np.ndarray, truth: np.ndarray
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import hnswlib

    gc.collect()
    heap0 = heap_bytes()
    started = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=ds.docs.shape[1])
    index.init_index(max_elements=len(ds.docs), ef_construction=100, M=16)
    index.set_num_threads(1)
    index.add_items(ds.docs, np.arange(len(ds.docs)))
    info = {
        "build_seconds": round(time.perf_counter() - started, 2),
        "heap_growth_per_vector": round((heap_bytes() - heap0) / len(ds.docs), 1),
        "M": 16,
        "ef_construction": 100,
    }
    rows = []
    for ef in (16, 32, 64, 128, 256):
        index.set_ef(ef)

        def one(x: np.ndarray) -> np.ndarray:
            return index.knn_query(x, K)[0].astype(np.int64)

        qps, found = single_qps(one, queries)
        rows.append(
            {
                "system": "hnswlib",
                "nprobe": ef,
                "rerank": None,
                "recall": round(recall_at_k(found, truth, K), 4),
                "single_qps": round(qps, 1),
                "batch_qps": round(batch_qps(one, queries), 1),
            }
        )
    return rows, info


def best_at(
    rows: list[dict[str, Any]], recall: float, key: str = "single_qps"
) -> dict[str, Any] | None:
    """The fastest row reaching ``recall``."""
    ok = [r for r in rows if r["recall"] >= recall]
    return max(ok, key=lambda r: r[key]) if ok else None


def summary(variant_rows: list[dict[str, Any]], memory: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    systems = sorted(
        {(r["system"], r.get("storage"), r.get("routing")) for r in variant_rows}, key=str
    )
    for system, storage, routing in systems:
        rows = [
            r
            for r in variant_rows
            if (r["system"], r.get("storage"), r.get("routing")) == (system, storage, routing)
        ]
        label = "/".join(x for x in (system, storage, routing) if x)
        out[label] = {str(target): best_at(rows, target) for target in (0.90, 0.95)} | {
            f"batch_{target}": best_at(rows, target, "batch_qps") for target in (0.90, 0.95)
        }
    return out


def print_summary(
    variant: str, table: dict[str, Any], memory: list[dict[str, Any]], others: dict[str, Any]
) -> None:
    print(f"\n== {variant}: fastest single-query setting reaching recall@10 (1 thread) ==")
    head = ("@0.90 q/s", "(nprobe,rerank)", "@0.95 q/s", "(nprobe,rerank)", "batch@0.95")
    print(f"{'system':42s} " + " ".join(f"{h:>16s}" for h in head))
    for label, cells in table.items():
        a, b = _cell(cells["0.9"]), _cell(cells["0.95"])
        batch = cells["batch_0.95"]
        values = (*a, *b, f"{batch['batch_qps']:.0f}" if batch else "-")
        print(f"{label:42s} " + " ".join(f"{v:>16s}" for v in values))
    print(f"\n== {variant}: resident bytes per vector and build time ==")
    columns = ("reported", "heap", "RssAnon", "RssFile", "build s", "train s")
    print(f"{'kind':11s} {'storage':8s} " + " ".join(f"{h:>9s}" for h in columns))
    for m in memory:
        trained = m.get("catalyzer_train_seconds")
        print(
            f"{m['kind']:11s} {m['storage']:8s} {m['bytes_per_vector_reported']:9.1f} "
            f"{m['heap_growth_per_vector']:8.1f} {m['rss_anon_growth_per_vector']:8.1f} "
            f"{m['rss_file_growth_per_vector']:8.1f} {m['build_seconds']:8.1f} "
            f"{trained if trained is not None else '-':>9}"
        )
    for name, info in others.items():
        print(f"{name}: {info}")


def _cell(row: dict[str, Any] | None) -> tuple[str, str]:
    if row is None:
        return "-", "-"
    return f"{row['single_qps']:.0f}", f"({row['nprobe']},{row['rerank']})"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(report["variants"])
    fig, axes = plt.subplots(1, len(variants), figsize=(7 * len(variants), 5), squeeze=False)
    for ax, variant in zip(axes[0], variants, strict=True):
        rows = report["variants"][variant]["rows"]
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            label = "/".join(x for x in (r["system"], r.get("storage"), r.get("routing")) if x)
            groups.setdefault(label, []).append(r)
        colours = plt.get_cmap("tab20").colors  # type: ignore[attr-defined]
        for i, (label, group) in enumerate(sorted(groups.items())):
            frontier = _pareto(group)
            style = "-" if "learned" in label or "engine" not in label else "--"
            ax.plot(
                [r["recall"] for r in frontier],
                [r["single_qps"] for r in frontier],
                marker=".",
                label=label,
                color=colours[i % len(colours)],
                linestyle=style,
            )
        ax.set_xlabel("recall@10")
        ax.set_ylabel("single-query calls / s (1 thread)")
        ax.set_yscale("log")
        ax.set_xlim(0.8, 1.0)
        ax.set_title(f"{variant}: best q/s per recall")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _pareto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out, best = [], -1.0
    for r in sorted(rows, key=lambda r: -r["recall"]):
        if r["single_qps"] > best:
            out.append(r)
            best = r["single_qps"]
    return sorted(out, key=lambda r: r["recall"])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    faiss.omp_set_num_threads(1)
    report: dict[str, Any] = {"k": K, "threads": 1, "queries_timed": args.queries, "variants": {}}
    for variant in args.variants:
        ds = debian.load(variant)
        queries = np.ascontiguousarray(ds.test_queries[: args.queries])
        truth = ds.test_gt[: args.queries, :K]
        metric = Metric.COSINE if variant == "cos" else Metric.IP
        ds = debian.Dataset(
            metric, ds.docs, ds.train_queries, ds.test_queries, ds.train_gt, ds.test_gt
        )
        lists_for = ListsByCount(ds, variant)
        rows, memory = engine_rows(ds, lists_for, queries, truth, args)
        others: dict[str, Any] = {}
        scann, others["scann"] = scann_rows(ds, queries, truth)
        hnsw, others["hnswlib"] = hnsw_rows(ds, queries, truth)
        rows += scann + hnsw
        table = summary(rows, memory)
        print_summary(variant, table, memory, others)
        report["variants"][variant] = {
            "n_docs": len(ds.docs),
            "lists": {
                str(nlist): {
                    "cluster_seconds": round(lists.cluster_seconds, 1),
                    "router_train_seconds": round(lists.router_seconds, 1),
                }
                for nlist, lists in lists_for.built.items()
            },
            "rows": rows,
            "memory": memory,
            "others": others,
            "summary": table,
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    plot(report, args.out.with_suffix(".png"))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
