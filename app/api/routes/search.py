"""Search, single and batched.

The handlers take the parsed body and return the response document, so the same code
serves these FastAPI routes (which also give the OpenAPI schema) and the fast path in
``app/api/fastpath.py`` that reaches them without FastAPI's routing and dependency solving.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import numpy as np
from fastapi import APIRouter, Response
from starlette.background import BackgroundTask
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
from app.service.search import Route, SearchOptions
from app.service.service import Service
from app.service.vectors import as_vector, as_vectors

router = APIRouter(tags=["search"])


class SearchReply(NamedTuple):
    """A search's response document, and the engine's share of its time: sent as
    ``Server-Timing: engine;dur=<ms>``, so a caller can tell the engine's time from the
    request path's (None when shards on other machines answered). ``record``: the search's
    bookkeeping (its counter, its queries in the log), run once the answer is sent, so the
    client does not wait for it. A named tuple, as one is made per search."""

    body: dict[str, Any]
    engine_seconds: float | None
    record: Callable[[], None]

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


def _is_caught_up(service: Service, params: SearchParams) -> bool:
    return params.min_seq is None or params.min_seq <= service.applied_seq


async def _caught_up(service: Service, params: SearchParams) -> None:
    """Read-your-writes: first wait for ``min_seq`` (the collection may be new here too)."""
    if not _is_caught_up(service, params):
        await run_in_threadpool(service.wait_for_seq, params.min_seq)


def _search(
    service: Service, params: SearchParams, queries: np.ndarray, opts: SearchOptions, route: Route
) -> dict[str, Any]:
    return service.search(params.collection, queries, opts, route=route)


async def _run(
    service: Service, params: SearchParams, queries: np.ndarray, opts: SearchOptions
) -> dict[str, Any]:
    route, cheap = service.plan_search(params.collection, len(queries), opts)
    if cheap:
        # A thread hop costs more than a small scan; big scans must not block the loop.
        return _search(service, params, queries, opts, route)
    return await run_in_threadpool(_search, service, params, queries, opts, route)


def _run_now(
    service: Service, params: SearchParams, queries: np.ndarray, opts: SearchOptions
) -> dict[str, Any] | None:
    """``_run`` when the search is cheap enough for the loop, else None."""
    route, cheap = service.plan_search(params.collection, len(queries), opts)
    return _search(service, params, queries, opts, route) if cheap else None


def _one_query(
    vector: Any, service: Service, searches: SearchParamCache, params: SearchParams
) -> np.ndarray:
    return as_vector(vector, service.collection_dim(params.collection))


def _batch_queries(
    vectors: Any, service: Service, searches: SearchParamCache, params: SearchParams
) -> np.ndarray:
    dim = service.collection_dim(params.collection)
    most = searches.settings.max_batch_queries
    if isinstance(vectors, list | np.ndarray) and not 1 <= len(vectors) <= most:
        raise InvalidInput(f"vectors must hold 1 to {most} queries")
    return as_vectors(vectors, dim, "vectors")


def _one_document(out: dict[str, Any]) -> dict[str, Any]:
    return {"hits": out.pop("results")[0], **out}


def _batch_document(out: dict[str, Any]) -> dict[str, Any]:
    out["results"] = [{"hits": hits} for hits in out["results"]]
    return out


class SearchForm(NamedTuple):
    """What tells ``/search`` from ``/search/batch``: the body's field holding the queries
    (``rows``: a list of vectors, not one), how they are read, and the response document
    made of the service's output."""

    field: str
    rows: bool
    queries: Callable[[Any, Service, SearchParamCache, SearchParams], np.ndarray]
    document: Callable[[dict[str, Any]], dict[str, Any]]


ONE = SearchForm("vector", False, _one_query, _one_document)
BATCH = SearchForm("vectors", True, _batch_queries, _batch_document)


def _reply(
    form: SearchForm,
    out: dict[str, Any],
    service: Service,
    metrics: Metrics,
    params: SearchParams,
    queries: np.ndarray,
) -> SearchReply:
    engine_seconds = out.pop("engine_seconds", None)
    record = partial(_record, service, metrics, params, queries, out["routing"], out["nprobe"])
    return SearchReply(form.document(out), engine_seconds, record)


def _record(
    service: Service,
    metrics: Metrics,
    params: SearchParams,
    queries: np.ndarray,
    routing: str,
    nprobe: float | None,
) -> None:
    metrics.count_searches(routing, nprobe, len(queries))
    if params.log:
        service.log_queries(params.collection, queries, params.k)


async def search_reply(
    form: SearchForm,
    body: dict[str, Any],
    service: Service,
    searches: SearchParamCache,
    metrics: Metrics,
) -> SearchReply:
    """The reply to a parsed request body of ``form``."""
    raw = body.pop(form.field, None)
    params, opts = searches.resolve(body)
    await _caught_up(service, params)
    queries = form.queries(raw, service, searches, params)
    out = await _run(service, params, queries, opts)
    return _reply(form, out, service, metrics, params, queries)


def search_reply_now(
    form: SearchForm,
    body: dict[str, Any],
    service: Service,
    searches: SearchParamCache,
    metrics: Metrics,
) -> SearchReply | None:
    """``search_reply`` on the calling thread, or None (nothing searched) when it must wait:
    for ``min_seq``, or because it scans too much for the event loop."""
    raw = body.pop(form.field, None)
    params, opts = searches.resolve(body)
    if not _is_caught_up(service, params):
        return None
    queries = form.queries(raw, service, searches, params)
    out = _run_now(service, params, queries, opts)
    return None if out is None else _reply(form, out, service, metrics, params, queries)


def _response(reply: SearchReply) -> Response:
    """The reply as FastAPI's routes send it, its bookkeeping once sent (as the edge does)."""
    after = BackgroundTask(reply.record)
    return OrjsonResponse(reply.body, headers=reply.headers(), background=after)


@router.post(
    "/search", response_model=SearchResponse, operation_id="search", openapi_extra=_body("search")
)
async def search(
    body: JsonBody, service: ServiceDep, searches: SearchParamsDep, metrics: MetricsDep
) -> Response:
    reply = await search_reply(ONE, body, service, searches, metrics)
    return _response(reply)


@router.post(
    "/search/batch",
    response_model=BatchSearchResponse,
    operation_id="search_batch",
    openapi_extra=_body("search_batch"),
)
async def search_batch(
    body: JsonBody, service: ServiceDep, searches: SearchParamsDep, metrics: MetricsDep
) -> Response:
    reply = await search_reply(BATCH, body, service, searches, metrics)
    return _response(reply)
