"""The app factory: ``create_app(settings)`` wires settings, service, routes and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from app.api import problems
from app.api.auth import ApiKeyMiddleware
from app.api.fastpath import SearchFastPath
from app.api.metrics import Metrics
from app.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from app.api.openapi import build_openapi
from app.api.request_id import RequestIdMiddleware
from app.api.routes import collections, console, jobs, ops, points, report, search
from app.engine.ivf import scan_serially_on_this_thread
from app.service.service import Service
from app.settings import Settings
from app.store.db import Store


def build_service(settings: Settings) -> Service:
    """The service over the configured store, with the worker embedded if the settings say so."""
    store = Store(settings.resolved_database_url)
    if not settings.embedded_worker:
        return Service(settings, store)
    from worker.worker import Worker  # only here: the API process needs no worker otherwise

    return Service(settings, store, Worker(settings, store))


def create_app(settings: Settings) -> FastAPI:
    """The ASGI app; the service starts (migrate, load indexes) in the lifespan."""
    service = build_service(settings)
    metrics = Metrics()
    metrics.watch(service)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        scan_serially_on_this_thread()  # the loop runs only searches cheap enough to inline
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(
        title="vecroute",
        version="1.0.0",
        summary="Vector search with learned IVF routing",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.metrics = metrics
    for module in (collections, points, search, jobs, report, ops, console):
        app.include_router(module.router)
    console.mount(app)
    problems.install(app)
    app.add_middleware(SearchFastPath)  # innermost: behind the API key and body limit
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_keys:
        app.add_middleware(
            ApiKeyMiddleware, api_keys=settings.api_keys, read_api_keys=settings.read_api_keys
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware, access_log=settings.access_log)  # outermost
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
