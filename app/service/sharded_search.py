"""Searches of sharded collections: the seam between the service and the cluster coordinator
(``app/cluster/coordinator.py``), typed by a protocol so that serving without a cluster
never imports ray.

The API process routes as it does for any collection (``plan_route``: learned or centroid
router, adaptive probing) and the shards scan only their probed lists; their top-k merged
is the single-process answer. A filtered search runs the single-process planner
(``app/engine/filtered.py``): the payload index (held here) gives the matching ids, the
shards scan with their bitmap, every list for the exact plan, the routed lists widened
pass by pass for the IVF plan; same plan, same passes, same hits.

Answered by the API process's own index, which holds the whole collection: exact and
emulator searches (nothing to route to shards, or members proposed instead of lists),
searches of a collection whose lists hold codes (the shards hold float lists: their top-k
by exact score would not be the single-process top-k, which re-ranks the best code
candidates of all probed lists together), and any search while the shards still serve
another clustering than the API's (a rebalance in progress).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from app.engine.clustering import Clustering
from app.engine.filtered import Plan, choose_plan, widening
from app.engine.ivf import SearchResult
from app.engine.metric import prepare
from app.engine.routing import Router
from app.service.live import LiveCollection
from app.service.search import Route, SearchOptions, allowed_ids


class ShardHitsLike(Protocol):
    """``app.cluster.shard_set.ShardedHits``: the merged top-k of the shards."""

    @property
    def scores(self) -> np.ndarray: ...

    @property
    def ids(self) -> np.ndarray: ...

    @property
    def scanned(self) -> float: ...

    @property
    def shards_probed(self) -> float: ...

    @property
    def touched(self) -> np.ndarray: ...

    @property
    def missing(self) -> tuple[int, ...]: ...


class ShardCoordinator(Protocol):
    """What the service needs of ``app.cluster.coordinator.Coordinator``."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def request(self, collection_id: int, shards: int, replicas: int) -> None: ...

    def describe(self, collection_id: int) -> list[dict[str, Any]] | None: ...

    def serving_clustering(self, collection_id: int) -> Clustering | None: ...

    def search(
        self,
        collection_id: int,
        queries: np.ndarray,
        k: int,
        nprobe: int,
        *,
        router: Router | None,
        lists: np.ndarray | None,
        min_seq: int,
        partial: bool,
        allowed: np.ndarray | None = None,
    ) -> ShardHitsLike: ...


def search_shards(
    coordinator: ShardCoordinator,
    live: LiveCollection,
    queries: np.ndarray,
    opts: SearchOptions,
    route: Route,
    min_seq: int,
) -> dict[str, Any] | None:
    """The response of a search the shards answer, or None when the API's index answers it.

    ``min_seq``: every write this process has applied, so the shards answer what the
    API's own index would (read-your-writes across shards).
    """
    if route.nprobe is None or route.clustering is None:
        return None
    if route.emulator is not None:  # the emulator proposes members, not lists to scan
        return None
    if live.index.quantization.compressed:  # the shards hold float lists only
        return None
    serving = coordinator.serving_clustering(live.record.id)
    if serving is None or serving.version != route.clustering.version:
        return None
    if opts.filter is not None:
        return _filtered(coordinator, live, queries, opts, route, min_seq)
    lists = None
    nprobe: float = route.nprobe
    if route.adaptive is not None and route.router is not None:
        calibration, level = route.adaptive
        index = live.index
        lists = calibration.probe_lists(
            route.router, level, prepare(queries, index.metric, index.dim)
        )
        nprobe = float((lists >= 0).sum(axis=1).mean())
    hits = coordinator.search(
        live.record.id,
        queries,
        opts.k,
        route.nprobe,
        router=route.router,
        lists=lists,
        min_seq=min_seq,
        partial=opts.allow_partial,
    )
    result = SearchResult(hits.scores, hits.ids, nprobe, hits.scanned)
    routing = "learned" if route.router is not None else "centroid"
    out = _response(live, result, opts, route.router, routing, "ivf", nprobe)
    return _shards(out, opts, hits.shards_probed, hits.missing)


def _filtered(
    coordinator: ShardCoordinator,
    live: LiveCollection,
    queries: np.ndarray,
    opts: SearchOptions,
    route: Route,
    min_seq: int,
) -> dict[str, Any]:
    """The single-process planner's plan and passes, each pass scattered to the shards."""
    assert route.clustering is not None and route.nprobe is not None
    allowed = allowed_ids(live, opts.filter) if opts.filter is not None else None
    assert allowed is not None
    nlist = route.clustering.nlist
    plan, width = choose_plan(allowed.count, live.index.count, route.nprobe, nlist)
    router = route.router if plan is Plan.IVF else None
    touched = np.zeros(len(queries))
    missing: set[int] = set()

    def search(rows: np.ndarray, nprobe: int) -> SearchResult:
        hits = coordinator.search(
            live.record.id,
            queries[rows],
            opts.k,
            nprobe,  # the exact plan: every list, in the centroids' order
            router=router,
            lists=None,
            min_seq=min_seq,
            partial=opts.allow_partial,
            allowed=allowed.bits,
        )
        touched[rows] = hits.touched
        missing.update(hits.missing)
        return SearchResult(hits.scores, hits.ids, nprobe, hits.scanned)

    if plan is Plan.EXACT:
        result = search(np.arange(len(queries)), nlist)
        out = _response(live, result, opts, None, "exact", str(plan), None)
    else:
        result, widest = widening(search, len(queries), min(opts.k, allowed.count), width, nlist)
        routing = "learned" if router is not None else "centroid"
        out = _response(live, result, opts, router, routing, str(plan), widest)
    out["matches"] = allowed.count
    probed = float(touched.mean()) if len(queries) else 0.0
    return _shards(out, opts, probed, tuple(sorted(missing)))


def _response(
    live: LiveCollection,
    result: SearchResult,
    opts: SearchOptions,
    router: Router | None,
    routing: str,
    plan: str,
    nprobe: float | None,
) -> dict[str, Any]:
    return {
        "results": [live.hits(result, row, opts.with_payload) for row in range(len(result.ids))],
        "nprobe": nprobe,
        "routing": routing,
        "router_version": router.version if router is not None else None,
        "plan": plan,
        "scanned": round(result.scanned, 1),
        "candidates": 0.0,  # float lists: nothing to re-score
    }


def _shards(
    out: dict[str, Any], opts: SearchOptions, probed: float, missing: tuple[int, ...]
) -> dict[str, Any]:
    """``out`` with how many shards a query touched and, when asked for, which were missing."""
    out["shards_probed"] = round(probed, 3)
    if opts.allow_partial:
        out["partial"] = bool(missing)
        out["missing_shards"] = list(missing)
    return out
