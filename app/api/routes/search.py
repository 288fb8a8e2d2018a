"""Search, single and batched.

The handlers take the parsed body and return the response document, so the same code
serves these FastAPI routes (which also give the OpenAPI schema) and the fast path in
``app/api/fastpath.py`` that reaches them without FastAPI's routing and dependency solving.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import numpy as np
from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import JsonBody, MetricsDep, SearchParamsDep, ServiceDep
from app.api.metrics import Metrics
from app.api.responses import OrjsonResponse
from app.api.schemas import (
    REQUEST_BODIES,
    BatchSearchResponse,
    SearchParams,
    SearchResponse,
)
from app.api.search_params import SearchParamCache
from app.service.errors import InvalidInput
from app.service.search import SearchOptions
from app.service.service import Service
from app.service.vectors import as_vector, as_vectors

router = APIRouter(tags=["search"])


class SearchReply(NamedTuple):
    """A search's response document, and the engine's share of its time: sent as
    ``Server-Timing: engine;dur=<ms>``, so a caller can tell the engine's time from the
    request path's (None when shards on other machines answered). A named tuple, as one
    is made per search."""

    body: dict[str, Any]
    engine_seconds: float | None

    def server_timing(self) -> bytes:
        """The header's value (only when ``engine_seconds`` is known)."""
        assert self.engine_seconds is not None
        return b"engine;dur=%.3f" % (self.engine_seconds * 1e3)

    def headers(self) -> dict[str, str] | None:
        if self.engine_seconds is None:
            return None
        return {"server-timing": self.server_timing().decode()}


def _body(operation: str) -> dict[str, Any]:
    name = REQUEST_BODIES[operation].__name__
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
    return {"requestBody": {"required": True, "content": content}}


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
    body: dict[str, Any], service: Service, searches: SearchParamCache, metrics: Metrics
) -> SearchReply:
    vector = body.pop("vector", None)
    params, opts = searches.resolve(body)
    await _caught_up(service, params)
    queries = as_vector(vector, service.collection_dim(params.collection))
    out = await _run(service, params, queries, opts)
    metrics.count_searches(out["routing"], out["nprobe"])
    engine_seconds = out.pop("engine_seconds", None)
    hits = out.pop("results")[0]
    return SearchReply({"hits": hits, **out}, engine_seconds)


async def search_many(
    body: dict[str, Any], service: Service, searches: SearchParamCache, metrics: Metrics
) -> SearchReply:
    vectors = body.pop("vectors", None)
    params, opts = searches.resolve(body)
    await _caught_up(service, params)
    dim = service.collection_dim(params.collection)
    most = searches.settings.max_batch_queries
    if isinstance(vectors, list) and not 1 <= len(vectors) <= most:
        raise InvalidInput(f"vectors must hold 1 to {most} queries")
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
    body: JsonBody, service: ServiceDep, searches: SearchParamsDep, metrics: MetricsDep
) -> Response:
    reply = await search_one(body, service, searches, metrics)
    return OrjsonResponse(reply.body, headers=reply.headers())


@router.post(
    "/search/batch",
    response_model=BatchSearchResponse,
    operation_id="search_batch",
    openapi_extra=_body("search_batch"),
)
async def search_batch(
    body: JsonBody, service: ServiceDep, searches: SearchParamsDep, metrics: MetricsDep
) -> Response:
    reply = await search_many(body, service, searches, metrics)
    return OrjsonResponse(reply.body, headers=reply.headers())
