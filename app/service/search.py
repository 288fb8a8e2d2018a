"""Search: routing choice, nprobe defaults and checks, payload filters, hits with labels."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from app.engine.adaptive import AdaptiveCalibration, AdaptiveLevel
from app.engine.allowed import AllowedIds
from app.engine.clustering import Clustering
from app.engine.emulator import Emulator
from app.engine.filtered import Plan, filtered_search
from app.engine.filters import Filter, FilterError
from app.engine.ivf import RouterMismatchError, SearchResult
from app.engine.metric import prepare
from app.engine.recall_table import RecallTable
from app.engine.routing import Router
from app.service.emulator_search import emulator_search
from app.service.errors import InvalidInput, NoEmulator, NoLearnedRouter, NoRecallTable
from app.service.live import LiveCollection


@dataclass(frozen=True)
class SearchOptions:
    k: int
    nprobe: int | None
    routing: str
    with_payload: bool
    target_recall: float | None = None
    filter: Filter | None = None
    emulator_per_list: int = 10  # routing "emulator": members proposed per probed list
    rerank: int | None = None  # code candidates re-scored exactly (None: the kind's default)
    # A sharded collection with a shard down answers from the others, flagged (else 503).
    allow_partial: bool = False


class Route(NamedTuple):
    """How a search will scan: the clustering, the router (None: its centroids) and the
    lists probed per query (None: every list, i.e. exact search). A named tuple, as it is
    made per search: a frozen dataclass took ~8x as long to build."""

    clustering: Clustering | None
    router: Router | None
    nprobe: int | None  # with ``adaptive``, the most lists a query may probe
    adaptive: tuple[AdaptiveCalibration, AdaptiveLevel] | None = None
    emulator: tuple[Emulator, np.ndarray] | None = None  # with the ids it never saw


def plan_route(live: LiveCollection, opts: SearchOptions, default_nprobe: int) -> Route:
    """The routing and probes a search will use: one resolution for the search itself and
    for ``Service.is_cheap``, which must count what the search will really read."""
    clustering = live.index.clustering
    router = live.router
    if router is not None and (
        clustering is None or router.clustering_version != clustering.version
    ):
        router = None  # caught mid-swap: the router belongs to another clustering
    if opts.routing == "learned" and router is None:
        raise NoLearnedRouter("no learned router is active for the current clustering")
    if opts.routing == "emulator":
        return _emulator_route(live, opts, default_nprobe)
    if clustering is None or opts.routing == "exact":
        return Route(clustering, None, None)
    if opts.target_recall is not None and opts.filter is not None:
        # The tables hold the unfiltered top-10; a filter's top-10 lie deeper in the lists,
        # as deep as the filter is selective or correlated with the vectors: no table
        # promises them, the exact plan over the matches keeps any target.
        return Route(clustering, None, None)
    chosen = router if opts.routing in ("auto", "learned") else None
    if opts.target_recall is not None and chosen is not None:
        calibration = live.adaptive_for(chosen)
        level = calibration.for_target(opts.target_recall) if calibration is not None else None
        if calibration is not None and level is not None:
            widest = min(calibration.max_nprobe, clustering.nlist)
            return Route(clustering, chosen, widest, (calibration, level))
    nprobe = _nprobe(live, clustering, chosen, opts, default_nprobe)
    if nprobe is None:  # a target no probing of code lists reaches: exact search keeps it
        return Route(clustering, None, None)
    return Route(clustering, chosen, nprobe)


def run_search(
    live: LiveCollection,
    queries: np.ndarray,
    opts: SearchOptions,
    default_nprobe: int,
    route: Route | None = None,
) -> dict[str, Any]:
    """Results for a (n, dim) batch: per-query hits plus how the batch was routed.

    ``route``: planned already for these options (one resolution per request); planned for
    another clustering (swapped since), it is resolved again. ``engine_seconds``: the time
    spent in the engine (routing, scanning, re-ranking), for the ``Server-Timing`` header;
    the caller takes it out of the response.
    """
    if route is None or route.clustering is not live.index.clustering:
        route = plan_route(live, opts, default_nprobe)
    allowed = allowed_ids(live, opts.filter) if opts.filter is not None else None
    started = time.perf_counter()
    plan: str = "exact"
    nprobe: float | None
    if route.emulator is not None and route.nprobe is not None:
        emulator, fresh = route.emulator
        per_list = max(opts.k, opts.emulator_per_list)
        result = emulator_search(live, emulator, fresh, queries, opts.k, route.nprobe, per_list)
        used, version, nprobe, plan = "emulator", emulator.version, route.nprobe, "ivf"
    elif route.nprobe is None:
        result = _exact(live, queries, opts.k, allowed, opts.rerank)
        used, version, nprobe = "exact", None, None
    elif route.adaptive is not None and route.router is not None:
        result, learned = _adaptive(live, queries, opts, route.router, *route.adaptive)
        used = "learned" if learned else "centroid"
        version = route.router.version if learned else None
        nprobe, plan = result.nprobe, "ivf"
    else:
        chosen = route.router
        try:
            result, plan, nprobe = _scan(live, queries, opts, route.nprobe, chosen, allowed)
        except RouterMismatchError:  # the clustering was swapped since we read it
            chosen = None
            result, plan, nprobe = _scan(live, queries, opts, route.nprobe, None, allowed)
        used = "learned" if chosen is not None else "centroid"
        version = chosen.version if chosen is not None else None
        if plan == "exact":  # the filter is selective enough to search its matches exactly
            used, version = "exact", None
    engine_seconds = time.perf_counter() - started
    results = live.hits(result, opts.with_payload)
    out = {
        "results": results,
        "nprobe": nprobe,
        "routing": used,
        "router_version": version,
        "plan": plan,
        "scanned": round(result.scanned, 1),
        "candidates": round(result.candidates, 1),
        "engine_seconds": engine_seconds,
    }
    if allowed is not None:
        out["matches"] = allowed.count
    return out


def _emulator_route(live: LiveCollection, opts: SearchOptions, default_nprobe: int) -> Route:
    """The emulator's lists (``nprobe`` of them), or a 409 before one is trained."""
    emulator, fresh = live.emulator_state()
    if emulator is None:
        raise NoEmulator(
            "no emulator is trained for this collection: POST /train-router with "
            '"kind": "emulator" first'
        )
    if opts.filter is not None or opts.target_recall is not None:
        raise InvalidInput("routing 'emulator' takes neither a filter nor target_recall")
    nlist = emulator.nlist
    if opts.nprobe is not None and opts.nprobe > nlist:
        raise InvalidInput(f"nprobe must be in [1, {nlist}] for this collection's emulator")
    wanted = opts.nprobe or live.record.default_nprobe or default_nprobe
    return Route(live.index.clustering, None, min(wanted, nlist), emulator=(emulator, fresh))


def _adaptive(
    live: LiveCollection,
    queries: np.ndarray,
    opts: SearchOptions,
    router: Router,
    calibration: AdaptiveCalibration,
    level: AdaptiveLevel,
) -> tuple[SearchResult, bool]:
    """Each query probes the lists the calibrated threshold picks for it; (result, whether
    the learned router's lists were used: not if the clustering was swapped meanwhile)."""
    index = live.vector_index
    lists = calibration.probe_lists(router, level, prepare(queries, index.metric, index.dim))
    k, rerank = opts.k, opts.rerank
    try:
        return index.search(queries, k, lists=lists, router=router, rerank=rerank), True
    except RouterMismatchError:  # the lists belong to the old clustering: centroids, widely
        return index.search(queries, k, nprobe=calibration.max_nprobe, rerank=rerank), False


def allowed_ids(live: LiveCollection, f: Filter) -> AllowedIds:
    """The ids ``f`` lets through (``InvalidInput`` for a filter that does not parse)."""
    try:
        return live.payloads.allowed(f)
    except FilterError as exc:
        raise InvalidInput(f"filter: {exc}") from None


def _exact(
    live: LiveCollection,
    queries: np.ndarray,
    k: int,
    allowed: AllowedIds | None,
    rerank: int | None,
) -> SearchResult:
    """Exact search; with a filter, of its matches (on the filter's view once it has one)."""
    if allowed is None:
        return live.vector_index.search(queries, k, exact=True)
    out = filtered_search(
        live.vector_index,
        queries,
        k,
        allowed,
        nprobe=1,
        plan=Plan.EXACT,
        views=live.filter_views,
        rerank=rerank,
    )
    return out.result


def _scan(
    live: LiveCollection,
    queries: np.ndarray,
    opts: SearchOptions,
    nprobe: int,
    router: Router | None,
    allowed: AllowedIds | None,
) -> tuple[SearchResult, str, int | None]:
    """(result, plan, nprobe used): routed IVF search, or the filtered planner's choice."""
    k, rerank = opts.k, opts.rerank
    if allowed is None:
        result = live.vector_index.search(queries, k, nprobe=nprobe, router=router, rerank=rerank)
        return result, "ivf", nprobe
    out = filtered_search(
        live.vector_index,
        queries,
        k,
        allowed,
        nprobe=nprobe,
        router=router,
        views=live.filter_views,
        rerank=rerank,
    )
    return out.result, str(out.plan), out.nprobe


def _nprobe(
    live: LiveCollection,
    clustering: Clustering,
    router: Router | None,
    opts: SearchOptions,
    default_nprobe: int,
) -> int | None:
    """The nprobe asked for, the one that keeps ``target_recall``, or the default; None
    (exact search) for a target that no nprobe of code lists keeps."""
    nlist = clustering.nlist
    if opts.target_recall is not None:
        table = _recall_table(live, clustering, router)
        # No nprobe reaches the bound: probing every float list is exact, so the promise
        # holds; code lists lose neighbours even then.
        found = table.nprobe_for(opts.target_recall)
        if found is None:
            return nlist if table.codes is None else None
        return found
    if opts.nprobe is None:
        return min(live.record.default_nprobe or default_nprobe, nlist)
    if opts.nprobe > nlist:
        raise InvalidInput(f"nprobe must be in [1, {nlist}] for this collection")
    return opts.nprobe


def _recall_table(
    live: LiveCollection, clustering: Clustering, router: Router | None
) -> RecallTable:
    """The held-out table of exactly the routing this search uses, or a 409."""
    stored = live.record.recall_table
    routing = "learned" if router is not None else "centroid"
    if stored is None or (
        stored["clustering_version"],
        stored["routing"],
        stored["router_version"],
        stored.get("codes"),  # absent from tables older than the stamp: float lists
    ) != (
        clustering.version,
        routing,
        router.version if router is not None else None,
        live.code_stamp(),
    ):
        raise NoRecallTable(
            f"no held-out recall table for the {routing} routing of this collection's "
            "current lists and codes yet: it is measured on logged queries when the worker "
            "builds the index or trains a router; pass nprobe instead"
        )
    return RecallTable.from_dict(stored)
