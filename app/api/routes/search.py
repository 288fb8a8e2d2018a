"""Search, single and batched.

The handlers take the parsed body and return the response document, so the same code
serves these FastAPI routes (which also give the OpenAPI schema) and the fast path in
``app/api/fastpath.py`` that reaches them without FastAPI's routing and dependency solving.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import JsonBody, MetricsDep, ServiceDep, SettingsDep
from app.api.metrics import Metrics
from app.api.responses import OrjsonResponse
from app.api.schemas import (
    REQUEST_BODIES,
    BatchSearchResponse,
    SearchParams,
    SearchResponse,
)
from app.engine.filters import Filter, FilterError, parse_filter
from app.service.errors import InvalidInput
from app.service.search import SearchOptions
from app.service.service import Service
from app.service.vectors import as_vector, as_vectors
from app.settings import Settings

router = APIRouter(tags=["search"])


@dataclass(frozen=True)
class SearchReply:
    """A search's response document, and the engine's share of its time: sent as
    ``Server-Timing: engine;dur=<ms>``, so a caller can tell the engine's time from the
    request path's (None when shards on other machines answered)."""

    body: dict[str, Any]
    engine_seconds: float | None

    def headers(self) -> dict[str, str] | None:
        if self.engine_seconds is None:
            return None
        return {"server-timing": f"engine;dur={self.engine_seconds * 1e3:.3f}"}


def _body(operation: str) -> dict[str, Any]:
    name = REQUEST_BODIES[operation].__name__
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
    return {"requestBody": {"required": True, "content": content}}


# Searches repeat their parameters (collection, k, nprobe, routing) while the vector changes,
# so validated parameters are kept per parameter set (up to _KEPT, then all forgotten). In
# the server each search meets caches that the engine's scan of its lists has just flushed;
# there pydantic's validation and the options took ~35 us of CPU per search, more than the
# rest of the handler's parsing but orjson's (bench/request_cpu.py --stub-touch-mb 3).
# Only bodies of plain scalars are kept (a filter is validated every time); a key holds each
# value's type, since True, 1 and 1.0 are one key to a dict.
_KEPT = 256
_SCALARS = frozenset({str, int, float, bool, type(None)})
_validated: dict[tuple[Any, ...], tuple[SearchParams, SearchOptions]] = {}


def _params(body: dict[str, Any], settings: Settings) -> tuple[SearchParams, SearchOptions]:
    """The body's parameters (without its vectors) and the search options they give."""
    key = _key(body, settings)
    kept = _validated.get(key) if key is not None else None
    if kept is not None:
        return kept
    params = SearchParams.model_validate(body)
    kept = (params, _options(params, settings))
    if key is not None:
        if len(_validated) >= _KEPT:
            _validated.clear()
        _validated[key] = kept
    return kept


def _key(body: dict[str, Any], settings: Settings) -> tuple[Any, ...] | None:
    key: list[Any] = [settings.max_k, settings.max_rerank, settings.emulator_candidates_per_list]
    for item in body.items():
        kind = item[1].__class__
        if kind not in _SCALARS:
            return None
        key += (item, kind)
    return tuple(key)


def _options(params: SearchParams, settings: Settings) -> SearchOptions:
    if params.k > settings.max_k:
        raise InvalidInput(f"k must be in [1, {settings.max_k}]")
    if params.target_recall is not None and params.nprobe is not None:
        raise InvalidInput("give nprobe or target_recall, not both")
    if params.target_recall is not None and params.routing == "exact":
        raise InvalidInput("target_recall does not apply to exact search")
    if params.rerank is not None and params.rerank > settings.max_rerank:
        raise InvalidInput(f"rerank must be in [1, {settings.max_rerank}]")
    return SearchOptions(
        params.k,
        params.nprobe,
        params.routing,
        params.with_payload,
        params.target_recall,
        _filter(params),
        settings.emulator_candidates_per_list,
        params.rerank,
        allow_partial=params.allow_partial,
    )


def _filter(params: SearchParams) -> Filter | None:
    """The engine's filter; the schema checked the shape, the engine checks the rest."""
    if params.filter is None:
        return None
    try:
        return parse_filter(params.filter.model_dump(exclude_unset=True))
    except FilterError as exc:
        raise InvalidInput(str(exc)) from None


async def _caught_up(service: Service, params: SearchParams) -> None:
    """Read-your-writes: first wait for ``min_seq`` (the collection may be new here too)."""
    if params.min_seq is not None and params.min_seq > service.applied_seq:
        await run_in_threadpool(service.wait_for_seq, params.min_seq)


async def _run(
    service: Service, params: SearchParams, queries: np.ndarray, opts: SearchOptions
) -> dict[str, Any]:
    route, cheap = service.plan_search(params.collection, len(queries), opts)
    if cheap:
        # A thread hop costs more than a small scan; big scans must not block the loop.
        return service.search(params.collection, queries, opts, log_queries=params.log, route=route)
    return await run_in_threadpool(
        partial(service.search, log_queries=params.log, route=route),
        params.collection,
        queries,
        opts,
    )


async def search_one(
    body: dict[str, Any], service: Service, settings: Settings, metrics: Metrics
) -> SearchReply:
    vector = body.pop("vector", None)
    params, opts = _params(body, settings)
    await _caught_up(service, params)
    queries = as_vector(vector, service.collection_dim(params.collection))
    out = await _run(service, params, queries, opts)
    metrics.count_searches(out["routing"], out["nprobe"])
    engine_seconds = out.pop("engine_seconds", None)
    hits = out.pop("results")[0]
    return SearchReply({"hits": hits, **out}, engine_seconds)


async def search_many(
    body: dict[str, Any], service: Service, settings: Settings, metrics: Metrics
) -> SearchReply:
    vectors = body.pop("vectors", None)
    params, opts = _params(body, settings)
    await _caught_up(service, params)
    dim = service.collection_dim(params.collection)
    if isinstance(vectors, list) and not 1 <= len(vectors) <= settings.max_batch_queries:
        raise InvalidInput(f"vectors must hold 1 to {settings.max_batch_queries} queries")
    queries = as_vectors(vectors, dim, "vectors")
    out = await _run(service, params, queries, opts)
    metrics.count_searches(out["routing"], out["nprobe"], len(queries))
    engine_seconds = out.pop("engine_seconds", None)
    out["results"] = [{"hits": hits} for hits in out["results"]]
    return SearchReply(out, engine_seconds)


@router.post(
    "/search", response_model=SearchResponse, operation_id="search", openapi_extra=_body("search")
)
async def search(
    body: JsonBody, service: ServiceDep, settings: SettingsDep, metrics: MetricsDep
) -> Response:
    reply = await search_one(body, service, settings, metrics)
    return OrjsonResponse(reply.body, headers=reply.headers())


@router.post(
    "/search/batch",
    response_model=BatchSearchResponse,
    operation_id="search_batch",
    openapi_extra=_body("search_batch"),
)
async def search_batch(
    body: JsonBody, service: ServiceDep, settings: SettingsDep, metrics: MetricsDep
) -> Response:
    reply = await search_many(body, service, settings, metrics)
    return OrjsonResponse(reply.body, headers=reply.headers())
