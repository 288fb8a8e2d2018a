"""``POST /search``, ``POST /search/batch`` and ``GET /healthz`` answered before FastAPI.

Profiled per single search (cProfile, 2000 requests): FastAPI's route matching over the
included routers, dependency solving and exception-middleware stack cost about as much as
the engine's search itself; FastAPI's own outer layers (an OpenTelemetry check on every
request, its error and body-limit wrappers) another ~5 us, and a routed ``/healthz`` ~75 us
of CPU. This layer sits inside the service's middleware (request id, metrics, API keys,
body limit: ``edge`` in app/main.py) and calls the same handlers as the FastAPI routes
(app/api/routes/search.py, ops.py), which remain for the OpenAPI schema; errors map through
the same problem+json helpers. A response is sent as its two ASGI messages, without a
Starlette ``Response`` (its header handling cost more than the rest of the sending).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.metrics import Metrics
from app.api.problems import as_problem
from app.api.routes.ops import healthz
from app.api.routes.search import SearchReply, search_many, search_one
from app.api.search_params import SearchParamCache
from app.service.parsing import load_object
from app.service.service import Service

Handler = Callable[[dict[str, Any], Service, SearchParamCache, Metrics], Awaitable[SearchReply]]
_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True)
class _Route:
    """What the metrics middleware reads from ``scope["route"]``: the route template."""

    path: str


HANDLERS: dict[str, tuple[_Route, Handler]] = {
    "/search": (_Route("/search"), search_one),
    "/search/batch": (_Route("/search/batch"), search_many),
}
_HEALTHZ = _Route("/healthz")


class FastRoutes:
    def __init__(
        self, app: ASGIApp, service: Service, searches: SearchParamCache, metrics: Metrics
    ) -> None:
        self.app = app
        self.service = service
        self.searches = searches
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"] if scope["type"] == "http" else None
        if method == "POST" and (entry := HANDLERS.get(scope["path"])) is not None:
            route, handler = entry
            scope["route"] = route
            await self._search(handler, scope, receive, send)
        elif method == "GET" and scope["path"] == _HEALTHZ.path:
            scope["route"] = _HEALTHZ
            await (await healthz())(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _search(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        try:
            body = load_object(b"".join(chunks))
            reply = await handler(body, self.service, self.searches, self.metrics)
            content = orjson.dumps(reply.body, option=orjson.OPT_SERIALIZE_NUMPY)
        except Exception as exc:
            await as_problem(exc)(scope, receive, send)
            return
        headers = [_JSON, (b"content-length", b"%d" % len(content))]
        headers += [(k.encode(), v.encode()) for k, v in (reply.headers() or {}).items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})
