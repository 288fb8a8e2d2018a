"""``POST /search`` and ``POST /search/batch`` without FastAPI's routing and dependencies.

Profiled per single search (cProfile, 2000 requests): FastAPI's route matching over the
included routers, dependency solving and exception-middleware stack cost about as much as
the engine's search itself. This ASGI layer sits inside the API-key and body-limit
middleware and calls the same handlers as the FastAPI routes (app/api/routes/search.py),
which remain for the OpenAPI schema; errors map through the same problem+json helpers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.metrics import Metrics
from app.api.problems import as_problem
from app.api.responses import OrjsonResponse
from app.api.routes.search import search_many, search_one
from app.service.parsing import load_object
from app.service.service import Service
from app.settings import Settings

Handler = Callable[[dict[str, Any], Service, Settings, Metrics], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class _Route:
    """What the metrics middleware reads from ``scope["route"]``: the route template."""

    path: str


HANDLERS: dict[str, tuple[_Route, Handler]] = {
    "/search": (_Route("/search"), search_one),
    "/search/batch": (_Route("/search/batch"), search_many),
}


class SearchFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = HANDLERS.get(scope["path"]) if scope["type"] == "http" else None
        if entry is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        route, handler = entry
        scope["route"] = route
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        state = scope["app"].state
        try:
            body = load_object(b"".join(chunks))
            out = await handler(body, state.service, state.settings, state.metrics)
            response: Response = OrjsonResponse(out)
        except Exception as exc:
            response = as_problem(exc)
        await response(scope, receive, send)
