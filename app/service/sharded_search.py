"""Searches of sharded collections: the seam between the service and the cluster coordinator
(``app/cluster/coordinator.py``), typed by a protocol so that serving without a cluster
never imports ray.

The API process routes as it does for any collection (``plan_route``: learned or centroid
router, adaptive probing) and the shards scan only their probed lists; their top-k merged
is the single-process answer. An exact search probes every list. A filtered search runs
the single-process planner (``app/engine/filtered.py``): the payload index (held here)
gives the matching ids, the shards scan with their bitmap, every list for the exact plan,
the routed lists widened pass by pass for the IVF plan; same plan, same passes, same hits.

Lists of codes (sq8, pq, rabitq, catalyzer kinds): every shard replica codes its lists
with the collection's stored codebook (or catalyzer), so codes are equal everywhere, and
holds the exact vectors of its points; each scans its probed lists' codes, re-ranks its
own best ``rerank`` candidates exactly and returns its exact top-k, which are merged.
Each shard's best ``rerank`` include every one of the single-process best ``rerank`` it
holds, so the shards re-rank a superset of what one process would: recall at least the
single-process one, scores always exact. ``candidates`` in the response is the count
re-scored per query summed over the shards (up to ``rerank`` per touched shard).

Once its shards serve, a collection (float lists or codes) is held here routing-only
(``RoutingIndex``: the clustering, routers, each point's list; no vector, no code, see
``registry.py``), so every search of it goes to the shards:
- emulator searches are refused (409 ``no-emulator``): level 2 proposes member ids and
  re-scores them with vectors held here, which this process no longer has;
- while the registry still holds the clustering the shards served before a rebalance, or
  already the next, the serving clustering's centroids route (``routing: centroid``);
- new codes (a PATCH of the quantization) rebuild the shards with them, as a rebalance
  does (new replicas, epoch switch, old drained); the old shards answer meanwhile;
- a restarted process holds it routing-only from the start, and answers 503
  (``shard-unavailable``) until its shards are built again.

Answered by the API process's own index, which holds the whole collection: a collection
before its first placement (flat, or its first shards still building), and emulator
searches of one not yet held routing-only.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from app.engine.allowed import AllowedIds
from app.engine.clustering import Clustering
from app.engine.filtered import Plan, choose_plan, widening
from app.engine.ivf import SearchResult
from app.engine.metric import prepare
from app.engine.routing import Router
from app.service.errors import NoEmulator, ShardDown
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

    @property
    def candidates(self) -> float: ...


class ShardCoordinator(Protocol):
    """What the service needs of ``app.cluster.coordinator.Coordinator``."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def request(self, collection_id: int, shards: int, replicas: int) -> None: ...

    def describe(self, collection_id: int) -> list[dict[str, Any]] | None: ...

    def serving_clustering(self, collection_id: int) -> Clustering | None: ...

    def serving_codes(self, collection_id: int) -> dict[str, Any] | None: ...

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
        rerank: int | None = None,
        exact: bool = False,
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
    routing_only = not live.index.holds_vectors
    if route.clustering is None:  # flat: nothing is sharded yet
        return None
    if route.emulator is not None:  # the emulator proposes members, not lists to scan
        if routing_only:
            raise NoEmulator(
                f"routing 'emulator' is not served for {live.name!r}: its shards hold its "
                "vectors, which the emulator's proposals need here; use learned or centroid"
            )
        return None
    serving = coordinator.serving_clustering(live.record.id)
    if serving is None:
        if routing_only:  # a restarted process: its shards are being built from the store
            raise ShardDown(f"the shards of {live.name!r} are loading: retry")
        return None
    if serving.version != route.clustering.version:
        if not routing_only:  # the API's own index answers until the shards catch up
            return None
        # Swapped between planning and now: the serving clustering's centroids route.
        widest = None if route.nprobe is None else min(route.nprobe, serving.nlist)
        route = Route(serving, None, widest)
    clustering = serving
    allowed = allowed_ids(live, opts.filter) if opts.filter is not None else None
    scatter = _Scatter(coordinator, live, queries, opts, min_seq, allowed)
    nlist = clustering.nlist
    if route.nprobe is None:  # exact: every list, as the single-process exact search
        result = scatter(np.arange(len(queries)), nlist, exact=True)
        return scatter.response(result, None, "exact", "exact", None)
    if allowed is not None:
        return _filtered(scatter, route.router, route.nprobe, nlist, allowed)
    lists = None
    nprobe: float = route.nprobe
    if route.adaptive is not None and route.router is not None:
        calibration, level = route.adaptive
        index = live.index
        lists = calibration.probe_lists(
            route.router, level, prepare(queries, index.metric, index.dim)
        )
        nprobe = float((lists >= 0).sum(axis=1).mean())
    result = scatter(np.arange(len(queries)), route.nprobe, route.router, lists)
    routing = "learned" if route.router is not None else "centroid"
    return scatter.response(result, route.router, routing, "ivf", nprobe)


def _filtered(
    scatter: _Scatter, router: Router | None, nprobe: int, nlist: int, allowed: AllowedIds
) -> dict[str, Any]:
    """The single-process planner's plan and passes, each pass scattered to the shards."""
    n = len(scatter.queries)
    plan, width = choose_plan(allowed.count, scatter.live.index.count, nprobe, nlist)
    if plan is Plan.EXACT:
        result = scatter(np.arange(n), nlist, exact=True)
        return scatter.response(result, None, "exact", str(plan), None)

    def search(rows: np.ndarray, width: int) -> SearchResult:
        return scatter(rows, width, router)

    result, widest = widening(search, n, min(scatter.opts.k, allowed.count), width, nlist)
    routing = "learned" if router is not None else "centroid"
    return scatter.response(result, router, routing, str(plan), widest)


class _Scatter:
    """The shard searches of one request: each query's rows go to the shards its probes
    touch; what each query touched and which shards were missing add up over the passes."""

    def __init__(
        self,
        coordinator: ShardCoordinator,
        live: LiveCollection,
        queries: np.ndarray,
        opts: SearchOptions,
        min_seq: int,
        allowed: AllowedIds | None,
    ) -> None:
        self.coordinator = coordinator
        self.live = live
        self.queries = queries
        self.opts = opts
        self.min_seq = min_seq
        self.allowed = allowed
        self.touched = np.zeros(len(queries))
        self.missing: set[int] = set()

    def __call__(
        self,
        rows: np.ndarray,
        nprobe: int,
        router: Router | None = None,
        lists: np.ndarray | None = None,
        *,
        exact: bool = False,
    ) -> SearchResult:
        """Search the queries ``rows`` with ``lists`` chosen by ``router``, else routed by
        it (None: centroids) to ``nprobe`` lists; ``exact``: all ``nlist`` of them, every
        code candidate re-scored."""
        hits = self.coordinator.search(
            self.live.record.id,
            self.queries[rows],
            self.opts.k,
            nprobe,
            router=router,
            lists=lists,
            min_seq=self.min_seq,
            partial=self.opts.allow_partial,
            allowed=self.allowed.bits if self.allowed is not None else None,
            rerank=self.opts.rerank,
            exact=exact,
        )
        self.touched[rows] = hits.touched
        self.missing.update(hits.missing)
        return SearchResult(hits.scores, hits.ids, nprobe, hits.scanned, hits.candidates)

    def response(
        self,
        result: SearchResult,
        router: Router | None,
        routing: str,
        plan: str,
        nprobe: float | None,
    ) -> dict[str, Any]:
        """The search response (the single-process fields, and how many shards a query
        touched; which were missing when the caller accepts partial results)."""
        opts = self.opts
        out: dict[str, Any] = {
            "results": self.live.hits(result, opts.with_payload),
            "nprobe": nprobe,
            "routing": routing,
            "router_version": router.version if router is not None else None,
            "plan": plan,
            "scanned": round(result.scanned, 1),
            # Code lists: the candidates re-scored exactly per query, summed over the shards
            # (each re-ranks its own best ``rerank``); float lists: none.
            "candidates": round(result.candidates, 1),
        }
        if self.allowed is not None:
            out["matches"] = self.allowed.count
        out["shards_probed"] = round(float(self.touched.mean()) if len(self.touched) else 0.0, 3)
        if opts.allow_partial:
            out["partial"] = bool(self.missing)
            out["missing_shards"] = sorted(self.missing)
        return out
