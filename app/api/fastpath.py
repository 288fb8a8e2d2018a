"""``POST /search``, ``POST /search/batch`` and ``GET /healthz`` answered before FastAPI.

Profiled per single search (cProfile, 2000 requests): FastAPI's route matching over the
included routers, dependency solving and exception-middleware stack cost about as much as
the engine's search itself; FastAPI's own outer layers (an OpenTelemetry check on every
request, its error and body-limit wrappers) another ~5 us, and a routed ``/healthz`` ~75 us
of CPU. These routes are answered by the edge (app/api/edge.py: request id, metrics, API
keys, body limit) with what ``FastRoutes.answer`` returns, from the same handlers as the
FastAPI routes (app/api/routes/search.py), which remain for the OpenAPI schema; errors map
through the same problem+json helpers. An answer is the status, headers and body the edge
sends as its two ASGI messages, without a Starlette ``Response`` (its header handling cost
more than the rest of the sending). ``answer_now`` is the same answer computed on the calling
thread, for the server's protocol (app/api/protocol.py), which has no task to wait in.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from app.api.metrics import Metrics
from app.api.problems import as_problem
from app.api.routes.search import (
    BATCH,
    ONE,
    SearchForm,
    SearchReply,
    search_reply,
    search_reply_now,
)
from app.api.search_params import SearchParamCache
from app.service.service import Service
from app.service.vector_json import load_with_vectors

After = Callable[[], None] | None  # run once the answer is sent: a search's bookkeeping
Answer = tuple[int, list[tuple[bytes, bytes]], bytes, After]  # status, headers, body, after
HEALTHZ = "/healthz"
_JSON = (b"content-type", b"application/json")
_OK = b'{"status":"ok"}'  # as the FastAPI route's OrjsonResponse sends it
_HEALTHY: Answer = (200, [(b"content-length", b"%d" % len(_OK)), _JSON], _OK, None)
FORMS: dict[str, SearchForm] = {"/search": ONE, "/search/batch": BATCH}


class FastRoutes:
    def __init__(self, service: Service, searches: SearchParamCache, metrics: Metrics) -> None:
        self.service = service
        self.searches = searches
        self.metrics = metrics

    @staticmethod
    def route(method: str, path: str) -> str | None:
        """The fast route's template (its metrics label), or None: FastAPI's to route."""
        if method == "POST" and path in FORMS:
            return path
        if method == "GET" and path == HEALTHZ:
            return HEALTHZ
        return None

    async def answer(self, route: str, body: bytes) -> Answer:
        if route == HEALTHZ:
            return _HEALTHY
        try:
            form = FORMS[route]
            parsed = load_with_vectors(body, form.field, form.rows)
            reply = await search_reply(form, parsed, self.service, self.searches, self.metrics)
            return _ok(reply)
        except Exception as exc:
            return _problem(exc)

    def answer_now(self, route: str, body: bytes) -> Answer | None:
        """``answer`` on the calling thread, or None when the search must wait for a write
        or scans too much for the event loop (then ``answer`` it, from the body again)."""
        if route == HEALTHZ:
            return _HEALTHY
        try:
            form = FORMS[route]
            parsed = load_with_vectors(body, form.field, form.rows)
            reply = search_reply_now(form, parsed, self.service, self.searches, self.metrics)
            return None if reply is None else _ok(reply)
        except Exception as exc:
            return _problem(exc)


def _ok(reply: SearchReply) -> Answer:
    content = orjson.dumps(reply.body, option=orjson.OPT_SERIALIZE_NUMPY)
    headers = [_JSON, (b"content-length", b"%d" % len(content))]
    if reply.engine_seconds is not None:
        headers.append((b"server-timing", reply.server_timing()))
    return 200, headers, content, reply.record


def _problem(exc: Exception) -> Answer:
    problem = as_problem(exc)
    return problem.status_code, problem.raw_headers, bytes(problem.body), None
