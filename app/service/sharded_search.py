"""Searches of sharded collections: the seam between the service and the cluster coordinator
(``app/cluster/coordinator.py``), typed by a protocol so that serving without a cluster
never imports ray.

The API process routes as it does for any collection (``plan_route``: learned or centroid
router, adaptive probing) and the shards scan only their probed lists; their top-k merged
is the single-process answer. Exact, filtered and emulator searches, searches of a
collection whose lists hold codes (sq8, pq, ...: the shards hold float lists), and any
search while the shards still serve another clustering than the API's (a rebalance in
progress), are answered by the API process's own index, which holds the whole collection.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from app.engine.clustering import Clustering
from app.engine.ivf import SearchResult
from app.engine.metric import prepare
from app.engine.routing import Router
from app.service.live import LiveCollection
from app.service.search import Route, SearchOptions


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
    if route.nprobe is None or route.clustering is None or opts.filter is not None:
        return None
    if route.emulator is not None:  # the emulator proposes members, not lists to scan
        return None
    if live.index.quantization.compressed:  # the shards hold float lists only
        return None
    serving = coordinator.serving_clustering(live.record.id)
    if serving is None or serving.version != route.clustering.version:
        return None
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
    out: dict[str, Any] = {
        "results": [live.hits(result, row, opts.with_payload) for row in range(len(queries))],
        "nprobe": nprobe,
        "routing": "learned" if route.router is not None else "centroid",
        "router_version": route.router.version if route.router is not None else None,
        "plan": "ivf",
        "scanned": round(hits.scanned, 1),
        "candidates": 0.0,  # float lists: nothing to re-score
        "shards_probed": round(hits.shards_probed, 3),
    }
    if opts.allow_partial:
        out["partial"] = bool(hits.missing)
        out["missing_shards"] = list(hits.missing)
    return out
