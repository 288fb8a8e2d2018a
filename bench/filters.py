"""Filtered search on the shared Debian data (issue 4): the planner against exact filtered
search, and pgvector-style post-filtering as the reference it must beat.

Every document gets a synthetic payload ``{"bucket": uniform integer in [0, 100000)}``
(seeded), declared as an integer payload index, so the filter ``bucket < s * 100000``
matches a share ``s`` of the documents, independent of the vectors. For each routing
(centroids; a learned linear router trained on the shipped train queries), the base nprobe
is the smallest whose unfiltered recall@10 reaches ``--target`` on held-out train queries.
Then, per selectivity, single queries (filter evaluation included, as in the service):

- ``auto``: the planner as the service runs it: the filter's bitmap from the payload index's
  cache (the filter repeats, as a tenant or category filter does) and, once the filter's
  searches have paid for it, its view (a copy of the matching vectors in the same lists,
  app/engine/views.py), earned by searching held-out train queries before the timing;
  ``auto (selector)``: the same without views, filtering through the bitmap in the scan;
  ``auto (uncached)``: without views, evaluating the filter for every query; ``exact`` and
  ``ivf``: one plan forced (with the view);
- ``post-filter(40)``: the top 40 of an unfiltered search at the base nprobe, then the filter
  (pgvector HNSW at its default ef_search 40, or any over-fetching post-filter);
- ``post-filter(lists)``: every vector of the base nprobe lists, then the filter (pgvector
  IVFFlat without iterative scans; our in-scan selector without widening).

Then the service itself (``vecroute serve`` on a loopback port, SQLite, the same documents
and payloads sent through ``/index``, built through the API with the same nlist): single
``/search`` requests, centroid routing at its base nprobe, ``auto`` with the filter as JSON
against unfiltered requests (routing ``HTTP`` in the table; ``--no-http`` skips it).

``vs unf.`` is queries/s against unfiltered search measured in the same rounds.
Recall@10 is measured against exact filtered search (brute force over the matching
documents), with ``min(10, matches)`` as the number of true neighbours.

    .venv/bin/python bench/filters.py            # all 60,631 documents, 1,000 test queries
    .venv/bin/python bench/filters.py --quick    # 10,000 documents, 200 queries
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script, bench/ would be sys.path[0] and bench/http.py would shadow the stdlib
# ``http`` (torch imports it); the repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np
from tqdm import tqdm

from app.engine.allowed import AllowedIds
from app.engine.clustering import Algorithm, auto_nlist, train_clustering
from app.engine.evaluation import recall_at_k
from app.engine.filtered import Plan, filtered_search
from app.engine.filters import Filter, parse_filter
from app.engine.ivf import VectorIndex
from app.engine.labels import exact_neighbours, list_labels
from app.engine.metric import Metric
from app.engine.payload_index import PayloadIndex
from app.engine.routing import Router
from app.engine.training import TrainConfig, train_router
from app.engine.views import FilterViews
from app.settings import Settings
from bench import debian
from bench.http import NAME, RawClient, Server, build, encode, hit_rows, ingest

RESULTS = Path(__file__).resolve().parent / "results"
K = 10
BUCKETS = 100_000
SELECTIVITIES = (0.5, 0.1, 0.01, 0.001)
NPROBES = (4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
POST_FILTER_CANDIDATES = 40
ROUNDS = 3
CHUNK = 100

# One query (1, d) -> its ids (at most k, best first) and what the run wants to record.
Search = Callable[[np.ndarray], tuple[np.ndarray, Any]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10,000 documents, 200 queries")
    p.add_argument("--docs", type=int, default=None, help="first N documents (default all)")
    p.add_argument("--queries", type=int, default=1000, help="test queries measured")
    p.add_argument("--calib", type=int, default=1000, help="train queries held out for nprobe")
    p.add_argument("--target", type=float, default=0.95, help="unfiltered recall@10 for nprobe")
    p.add_argument("--nlist", type=int, default=None, help="default: the service's auto nlist")
    p.add_argument("--no-learned", action="store_true", help="centroid routing only")
    p.add_argument("--no-http", action="store_true", help="skip the service over HTTP")
    p.add_argument("--out", type=Path, default=RESULTS / "filters.json")
    args = p.parse_args(argv)
    if args.quick:
        args.docs = args.docs or 10_000
        args.queries = min(args.queries, 200)
        args.calib = min(args.calib, 500)
        if args.out == RESULTS / "filters.json":
            args.out = RESULTS / "filters_quick.json"
    return args


def bucket_filter_json(selectivity: float) -> dict[str, Any]:
    return {"must": [{"key": "bucket", "range": {"lt": selectivity * BUCKETS}}]}


def bucket_filter(selectivity: float) -> Filter:
    return parse_filter(bucket_filter_json(selectivity))


def base_nprobe(
    index: VectorIndex, router: Router | None, queries: np.ndarray, gt: np.ndarray, target: float
) -> tuple[int, float]:
    """The smallest nprobe of the grid whose unfiltered recall@10 reaches ``target``."""
    nlist = index.clustering.nlist if index.clustering is not None else 1
    recall = 0.0
    for nprobe in (*(p for p in NPROBES if p < nlist), nlist):
        found = index.search(queries, K, nprobe=nprobe, router=router).ids
        recall = recall_at_k(found, gt, K)
        if recall >= target:
            return nprobe, recall
    return nlist, recall


def exact_filtered(
    docs: np.ndarray, mask: np.ndarray, queries: np.ndarray, metric: Metric
) -> np.ndarray:
    """Ground truth: exact top-k among the matching documents (-1 padded)."""
    rows = np.flatnonzero(mask[: len(docs)])
    if len(rows) == 0:
        return np.full((len(queries), K), -1, dtype=np.int64)
    found = exact_neighbours(docs[rows], queries, K, metric)
    return np.where(found >= 0, rows[np.maximum(found, 0)], -1)


def measure(
    named: dict[str, Search], queries: np.ndarray
) -> dict[str, tuple[np.ndarray, float, list[Any]]]:
    """Per search: (ids, queries/s, per-query extras) over single-query calls.

    Other jobs share the cores, so the searches take turns on chunks of ``CHUNK`` queries
    (each chunk's order rotated; a chunk reads far more lists than the caches hold, so no
    search inherits warm lists), and a search's time is the sum over chunks of its best of
    ``ROUNDS`` timings: a burst of load spoils one timing, not the comparison.
    """
    ids = {name: np.full((len(queries), K), -1, dtype=np.int64) for name in named}
    extras: dict[str, list[Any]] = {name: [None] * len(queries) for name in named}
    chunks = range(0, len(queries), CHUNK)
    best = {name: [math.inf] * len(chunks) for name in named}
    order = list(named)
    for _ in range(ROUNDS):
        for c, start in enumerate(chunks):
            order = order[1:] + order[:1]
            for name in order:
                search = named[name]
                started = time.perf_counter()
                for i in range(start, min(start + CHUNK, len(queries))):
                    found, extras[name][i] = search(queries[i : i + 1])
                    ids[name][i, : len(found)] = found[:K]
                best[name][c] = min(best[name][c], time.perf_counter() - started)
    return {name: (ids[name], len(queries) / sum(best[name]), extras[name]) for name in named}


def searches(
    f: Filter,
    index: VectorIndex,
    payloads: PayloadIndex,
    nprobe: int,
    router: Router | None,
    views: FilterViews,
) -> dict[str, Search]:
    """The filtered searches compared, by name, with the unfiltered one as the reference.

    Each asks the payload index for the filter's bitmap per query, as the service does: the
    filter repeats, so that is a cache hit, except in ``auto (uncached)``, which evaluates
    the filter over the payload columns for every query (filters that never repeat).
    """

    def planned(plan: Plan | None, cached: bool = True, viewed: bool = True) -> Search:
        def search(q: np.ndarray) -> tuple[np.ndarray, Any]:
            allowed = payloads.allowed(f) if cached else AllowedIds.from_mask(payloads.matching(f))
            out = filtered_search(
                index,
                q,
                K,
                allowed,
                nprobe=nprobe,
                router=router,
                plan=plan,
                views=views if viewed else None,
            )
            return out.result.ids[0], (str(out.plan), out.nprobe, out.view)

        return search

    def unfiltered(q: np.ndarray) -> tuple[np.ndarray, None]:
        return index.search(q, K, nprobe=nprobe, router=router).ids[0], None

    def post_filter(q: np.ndarray) -> tuple[np.ndarray, None]:
        bits = payloads.allowed(f).bits
        found = index.search(q, POST_FILTER_CANDIDATES, nprobe=nprobe, router=router).ids[0]
        found = found[found >= 0]
        passed = (bits[found >> 3] >> (found & 7)) & 1
        return found[passed.astype(bool)][:K], None

    def fixed_lists(q: np.ndarray) -> tuple[np.ndarray, None]:
        allowed = payloads.allowed(f)
        result = index.search(q, K, nprobe=nprobe, router=router, selector=allowed.selector)
        return result.ids[0], None

    return {
        "unfiltered": unfiltered,
        "auto": planned(None),
        "auto (selector)": planned(None, viewed=False),
        "auto (uncached)": planned(None, cached=False, viewed=False),
        "exact": planned(Plan.EXACT),
        "ivf": planned(Plan.IVF),
        f"post-filter({POST_FILTER_CANDIDATES})": post_filter,
        "post-filter(lists)": fixed_lists,
    }


def earn_view(
    search: Search, f: Filter, index: VectorIndex, payloads: PayloadIndex, warmup: np.ndarray
) -> dict[str, Any]:
    """Search ``warmup`` queries one by one, as a client would, until the filter's view is in
    use; then what it took and what the view costs (its copy, timed again, and its memory)."""
    # -1: never paid for itself within the warm-up (or does not fit the budget)
    used = next((n for n, q in enumerate(warmup, 1) if search(q[None])[1][2]), -1)
    allowed = payloads.allowed(f)
    started = time.perf_counter()
    view = index.subset(allowed.bits, index.generation)
    copy_s = time.perf_counter() - started
    mib = view.memory_bytes() / 2**20 if view is not None else None
    return {"view_after_queries": used, "view_copy_seconds": copy_s, "view_mib": mib}


def in_process(
    index: VectorIndex,
    payloads: PayloadIndex,
    router: Router | None,
    nprobe: int,
    warmup: np.ndarray,
) -> tuple[Callable[[float], dict[str, Search]], Callable[[float, Search], dict[str, Any]]]:
    """(searches per selectivity, warm-up) on the engine, with views of the service's size."""
    views = FilterViews(Settings().filter_view_mib << 20)

    def named(selectivity: float) -> dict[str, Search]:
        return searches(bucket_filter(selectivity), index, payloads, nprobe, router, views)

    def earn(selectivity: float, auto: Search) -> dict[str, Any]:
        return earn_view(auto, bucket_filter(selectivity), index, payloads, warmup)

    return named, earn


def over_http(
    client: RawClient, nprobe: int, warmup: np.ndarray
) -> tuple[Callable[[float], dict[str, Search]], Callable[[float, Search], dict[str, Any]]]:
    """(searches per selectivity, warm-up) through ``vecroute serve``: single /search
    requests with centroid routing, the filter as JSON, the bitmap and views the service's."""

    def request(q: np.ndarray, f: dict[str, Any] | None) -> tuple[np.ndarray, Any]:
        body: dict[str, Any] = {
            "collection": NAME,
            "vector": q[0],
            "k": K,
            "nprobe": nprobe,
            "routing": "centroid",
            "with_payload": False,
            "log": False,
        }
        if f is not None:
            body["filter"] = f
        out = client.json("POST", "/search", body)
        return hit_rows([out])[0], (out["plan"], out["nprobe"], None)

    def named(selectivity: float) -> dict[str, Search]:
        f = bucket_filter_json(selectivity)
        return {"unfiltered": lambda q: request(q, None), "auto": lambda q: request(q, f)}

    def views_held() -> tuple[float, float]:
        text = client.request(encode("GET", "/metrics"))[1].decode()
        samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
        return float(samples["vecroute_filter_views"]), float(samples["vecroute_filter_view_bytes"])

    def earn(selectivity: float, auto: Search) -> dict[str, Any]:
        held, size = views_held()
        used, mib = -1, None
        for n, q in enumerate(warmup, 1):
            auto(q[None])
            if n % 10 == 0 and (now := views_held())[0] > held:
                used, mib = n, (now[1] - size) / 2**20
                break
        return {"view_after_queries": used, "view_copy_seconds": None, "view_mib": mib}

    return named, earn


def run_http(
    docs: np.ndarray,
    buckets: np.ndarray,
    nlist: int,
    nprobe: int,
    queries: np.ndarray,
    warmup: np.ndarray,
    truths: dict[float | None, tuple[np.ndarray, int]],
    bar: tqdm,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The service on a loopback port (SQLite in a temporary directory), loaded and built
    through the API like any client would, then searched as ``over_http`` says."""
    tmp = Path(tempfile.mkdtemp(prefix="vecroute-filters-"))
    server = Server(tmp)
    try:
        server.start()
        client = RawClient(server.port)
        collection = {"name": NAME, "dim": docs.shape[1], "metric": "ip", "nlist": nlist}
        collection["payload_indexes"] = {"bucket": "integer"}
        client.json("POST", "/collections", collection, expect=201)
        ingest(client, docs, payloads=[{"bucket": int(b)} for b in buckets])
        built = build(client)
        named, earn = over_http(client, nprobe, warmup)
        rows = run_routing("HTTP", nprobe, named, earn, queries, truths, bar)
        client.close()
        return {"build_seconds": built["seconds"]}, rows
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def run_routing(
    name: str,
    nprobe: int,
    named_for: Callable[[float], dict[str, Search]],
    earn: Callable[[float, Search], dict[str, Any]],
    queries: np.ndarray,
    truths: dict[float | None, tuple[np.ndarray, int]],
    bar: tqdm,
) -> list[dict[str, Any]]:
    """``named_for``: the searches compared at a selectivity, ``unfiltered`` and ``auto``
    among them; ``earn``: searches ``auto`` before the timing, so that the filter earns its
    view, and says what that took; ``truths``: per selectivity (None: unfiltered), the exact
    top-k and the match count."""
    rows: list[dict[str, Any]] = []

    def row(selectivity: float | None, plan: str, ids: np.ndarray, qps: float, **kw: Any) -> None:
        gt, matches = truths[selectivity]
        need = min(K, matches)
        hits = (ids >= 0).sum(axis=1)
        rows.append(
            {
                "routing": name,
                "base_nprobe": nprobe,
                "selectivity": selectivity,
                "matches": matches,
                "plan": plan,
                "recall10": recall_at_k(ids, gt, need) if need else 1.0,
                "mean_hits": float(hits.mean()),
                "short_share": float((hits < need).mean()),
                "qps": qps,
                **kw,
            }
        )
        bar.update(1)

    for selectivity in SELECTIVITIES:
        named = named_for(selectivity)
        earned = earn(selectivity, named["auto"])
        measured = measure(named, queries)
        reference = measured["unfiltered"][1]
        for plan, (ids, qps, extras) in measured.items():
            kw: dict[str, Any] = {"vs_unfiltered": qps / reference}
            if plan == "unfiltered":
                if selectivity == SELECTIVITIES[0]:
                    row(None, plan, ids, qps, **kw)
                continue
            if extras[0] is not None:  # the planner's: (plan, nprobe, view) per query
                probes = [e[1] for e in extras if e[1] is not None]
                kw["chosen"] = sorted({e[0] for e in extras})
                kw["mean_nprobe"] = float(np.mean(probes)) if probes else None
                seen = [e[2] for e in extras if e[2] is not None]  # HTTP does not say
                kw["view_share"] = float(np.mean(seen)) if seen else None
            if plan == "auto":
                kw.update(earned)
            row(selectivity, plan, ids, qps, **kw)
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    n_train = None if args.docs is None else 5000
    ds = debian.load("ip", n_docs=args.docs, n_train=n_train, n_test=args.queries)
    docs, queries = ds.docs, ds.test_queries
    nlist = args.nlist or auto_nlist(len(docs))
    t = time.perf_counter()
    clustering = train_clustering(docs, nlist, Algorithm.KMEANS, ds.metric, seed=0)
    cluster_s = time.perf_counter() - t
    index = VectorIndex(docs.shape[1], ds.metric, clustering)
    index.upsert(np.arange(len(docs)), docs)
    buckets = np.random.default_rng(0).integers(0, BUCKETS, size=len(docs))
    t = time.perf_counter()
    payloads = PayloadIndex.build(
        {"bucket": "integer"}, ((i, {"bucket": int(b)}) for i, b in enumerate(buckets))
    )
    payload_s = time.perf_counter() - t
    # Ground truth per selectivity, shared by every routing.
    truths: dict[float | None, tuple[np.ndarray, int]] = {None: (ds.test_gt[:, :K], len(docs))}
    for selectivity in SELECTIVITIES:
        mask = payloads.matching(bucket_filter(selectivity))
        truths[selectivity] = (exact_filtered(docs, mask, queries, ds.metric), int(mask.sum()))
    calib_q, calib_gt = ds.train_queries[-args.calib :], ds.train_gt[-args.calib :, :K]
    routers: dict[str, Router | None] = {"centroid": None}
    train_s = None
    if not args.no_learned:
        t = time.perf_counter()
        doc_lists = clustering.assign(docs)
        train_q = ds.train_queries[: -args.calib]
        labels = list_labels(ds.train_gt[: -args.calib, :K], doc_lists)
        routers["learned"] = train_router(train_q, labels, clustering, TrainConfig())
        train_s = time.perf_counter() - t
    report: dict[str, Any] = {
        "docs": len(docs),
        "queries": len(queries),
        "nlist": nlist,
        "target": args.target,
        "cluster_seconds": cluster_s,
        "payload_index_seconds": payload_s,
        "router_train_seconds": train_s,
        "rows": [],
    }
    runs_per_routing = 1 + len(SELECTIVITIES) * 7
    http_runs = 0 if args.no_http else 1 + len(SELECTIVITIES)
    with tqdm(total=runs_per_routing * len(routers) + http_runs, desc="filtered search") as bar:
        for name, router in routers.items():
            nprobe, recall = base_nprobe(index, router, calib_q, calib_gt, args.target)
            report.setdefault("base_nprobe", {})[name] = {"nprobe": nprobe, "calib_recall": recall}
            report["rows"].extend(
                run_routing(
                    name,
                    nprobe,
                    *in_process(index, payloads, router, nprobe, calib_q),
                    queries,
                    truths,
                    bar,
                )
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        if not args.no_http:
            nprobe = report["base_nprobe"]["centroid"]["nprobe"]
            bar.set_postfix_str("over HTTP")
            report["http"], rows = run_http(
                docs, buckets, nlist, nprobe, queries, calib_q, truths, bar
            )
            report["rows"].extend(rows)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\n{report['docs']} documents, {report['queries']} queries, nlist {report['nlist']}; "
        f"base nprobe = smallest with unfiltered recall@10 >= {report['target']} (held out)"
    )
    print(
        f"{'routing':8} {'nprobe':>6} {'select':>7} {'matches':>7} {'plan':18} {'chose':9} "
        f"{'R@10':>6} {'hits':>5} {'short':>6} {'probes':>7} {'view':>5} {'q/s':>7} "
        f"{'vs unf.':>7}"
    )
    for r in report["rows"]:
        sel = "-" if r["selectivity"] is None else f"{100 * r['selectivity']:g}%"
        chose = "/".join(r.get("chosen", []))
        probes = r.get("mean_nprobe")
        view = r.get("view_share")
        print(
            f"{r['routing']:8} {r['base_nprobe']:6d} {sel:>7} {r['matches']:7d} {r['plan']:18} "
            f"{chose:9} {r['recall10']:6.3f} {r['mean_hits']:5.1f} {r['short_share']:6.3f} "
            f"{'' if probes is None else f'{probes:.0f}':>7} "
            f"{'' if view is None else f'{100 * view:.0f}%':>5} {r['qps']:7.0f} "
            f"{r['vs_unfiltered']:7.2f}"
        )
    print("\nviews (auto): warm-up queries until in use, copy time, memory")
    for r in report["rows"]:
        if r["plan"] == "auto":
            mib, copy_s = r["view_mib"], r["view_copy_seconds"]
            print(
                f"{r['routing']:8} {100 * r['selectivity']:>6g}% "
                f"after {r['view_after_queries']:4d} queries, copy "
                f"{'-' if copy_s is None else f'{1e3 * copy_s:.1f}'} ms, "
                f"{'-' if mib is None else f'{mib:.1f}'} MiB"
            )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    print_table(report)
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
