"""The app factory: ``create_app(settings)`` wires settings, service, routes and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from app.api import problems
from app.api.auth import ApiKeys
from app.api.edge import Edge
from app.api.fastpath import FastRoutes
from app.api.metrics import Metrics
from app.api.openapi import build_openapi
from app.api.routes import collections, console, jobs, ops, points, report, search
from app.api.search_params import SearchParamCache
from app.engine.ivf import scan_serially_on_this_thread
from app.service.service import Service
from app.service.sharded_search import ShardCoordinator
from app.settings import Settings
from app.store.db import Store, shareable_url


def build_service(settings: Settings) -> Service:
    """The service over the configured store, with the worker embedded if the settings say so."""
    store = Store(settings.resolved_database_url)
    address = settings.cluster_address
    cluster = build_coordinator(settings, store, address) if address else None
    if not settings.embedded_worker:
        return Service(settings, store, cluster=cluster)
    from worker.worker import Worker  # only here: the API process needs no worker otherwise

    return Service(settings, store, Worker(settings, store), cluster)


def build_coordinator(settings: Settings, store: Store, address: str) -> ShardCoordinator:
    """Join the Ray cluster at ``address`` and coordinate the sharded collections over it."""
    from app.cluster import ray_runtime  # only with a cluster: it brings ray in

    ray_runtime.connect(address)
    from app.cluster.coordinator import Coordinator

    return Coordinator(
        store,
        shareable_url(settings.resolved_database_url),
        ray_runtime.alive_nodes,
        on_every_node=ray_runtime.on_every_node,
        nprobe=settings.default_nprobe,
        placement_queries=settings.placement_queries,
        sync_interval_s=settings.cluster_sync_interval_s,
        search_timeout_s=settings.cluster_search_timeout_s,
        ready_timeout_s=settings.cluster_ready_timeout_s,
        snapshot_dir=str(settings.shard_snapshot_dir),
        snapshot_interval_s=settings.snapshot_interval_s,
        exact_storage=settings.exact_vectors,
        exact_dir=str(settings.exact_vectors_dir),
    )


class VecrouteApp(FastAPI):
    """FastAPI behind the service's own ASGI layers (``edge``), which answer the fast routes
    (app/api/fastpath.py) and hand every other HTTP request to FastAPI (``routed``)."""

    edge: Edge | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.edge is not None and scope["type"] == "http":
            await self.edge(scope, receive, send)
        else:  # lifespan, websockets
            await super().__call__(scope, receive, send)

    async def routed(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def edge(
    app: VecrouteApp,
    settings: Settings,
    service: Service,
    searches: SearchParamCache,
    metrics: Metrics,
) -> Edge:
    """Request id, metrics, API keys and body limit, then the fast routes or FastAPI."""
    keys = ApiKeys(settings.api_keys, settings.read_api_keys) if settings.api_keys else None
    return Edge(
        app.routed,
        FastRoutes(service, searches, metrics),
        metrics,
        max_body_bytes=settings.max_body_bytes,
        api_keys=keys,
        access_log=settings.access_log,
    )


def create_app(settings: Settings) -> VecrouteApp:
    """The ASGI app; the service starts (migrate, load indexes) in the lifespan."""
    service = build_service(settings)
    metrics = Metrics()
    metrics.watch(service)
    searches = SearchParamCache(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        scan_serially_on_this_thread()  # the loop runs only searches cheap enough to inline
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = VecrouteApp(
        title="vecroute",
        version="1.0.0",
        summary="Vector search with learned IVF routing",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.metrics = metrics
    app.state.search_params = searches
    for module in (collections, points, search, jobs, report, ops, console):
        app.include_router(module.router)
    console.mount(app)
    problems.install(app)
    app.edge = edge(app, settings, service, searches, metrics)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
