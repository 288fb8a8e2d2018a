"""The one ASGI layer every HTTP request passes before FastAPI: request id, metrics, API
keys, body limit, and the fast routes (app/api/fastpath.py), answered here.

These were four middleware layers, each an awaited call, a closure wrapping ``send`` and a
scan of the headers of its own; one layer reads the headers once, and a fast route's answer
is sent as two ASGI messages with no wrapper around ``send`` at all (only FastAPI's routes
get one, for the request id header and the status). In the server every ``/search`` runs
this on caches that the engine's scan has just flushed, where each frame costs.
"""

from __future__ import annotations

import logging
import time

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.auth import ApiKeys
from app.api.fastpath import Answer, FastRoutes
from app.api.metrics import Metrics
from app.api.request_id import HEADER, is_valid, request_id_from
from app.api.responses import problem
from app.logs import request_id

log = logging.getLogger("vecroute.access")
_LENGTH = b"content-length"
_AUTHORIZATION = b"authorization"


class Edge:
    def __init__(
        self,
        routed: ASGIApp,
        fast: FastRoutes,
        metrics: Metrics,
        *,
        max_body_bytes: int,
        api_keys: ApiKeys | None = None,
        access_log: bool = False,
    ) -> None:
        self.routed = routed
        self.fast = fast
        self.metrics = metrics
        self.max_bytes = max_body_bytes
        self.api_keys = api_keys
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One HTTP request (the app hands only those to the edge)."""
        rid = length = authorization = None
        for name, value in scope["headers"]:
            if name == _LENGTH:
                length = value
            elif name == HEADER and rid is None and is_valid(value):
                rid = value  # the first valid one
            elif name == _AUTHORIZATION and authorization is None:
                authorization = value
        rid_text = request_id_from(rid)
        id_header = (HEADER, rid if rid is not None else rid_text.encode())
        token = request_id.set(rid_text)
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        route = self.fast.route(method, path)
        status = [500]
        try:
            refusal = self._refusal(method, path, authorization, length)
            if refusal is not None:
                status[0] = await _send_answer(_answer(refusal), id_header, send)
            elif route is not None:
                answer = await self._fast(route, method, length is None, receive)
                if answer is not None:  # else the client went away
                    status[0] = await _send_answer(answer, id_header, send)
            else:
                await self._routed(scope, receive, send, id_header, length is None, status)
        finally:
            label = route or str(getattr(scope.get("route"), "path", "unmatched"))
            seconds = time.perf_counter() - started
            self.metrics.observe(method, label, status[0], seconds)
            if self.access_log:
                extra = {"method": method, "path": path, "status": status[0]}
                log.info("request", extra={**extra, "ms": round(seconds * 1000, 3)})
            request_id.reset(token)

    def _refusal(
        self, method: str, path: str, authorization: bytes | None, length: bytes | None
    ) -> Response | None:
        """401/403 without a fitting API key, then 413 for a declared length over the limit."""
        if self.api_keys is not None:
            refusal = self.api_keys.refusal(method, path, authorization)
            if refusal is not None:
                return refusal
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return self._too_large()
        return None

    def _too_large(self) -> Response:
        return problem(
            413,
            "Request body too large",
            f"the request body exceeds {self.max_bytes} bytes",
            "body-too-large",
        )

    async def _fast(
        self, route: str, method: str, chunked: bool, receive: Receive
    ) -> Answer | None:
        """A fast route's answer to the body (None if the client left before sending it);
        a GET's body is not read."""
        if method == "GET":
            return await self.fast.answer(route, b"")
        message = await receive()
        if message["type"] != "http.request":
            return None
        body = message.get("body", b"")
        if message.get("more_body", False):
            chunks = [body]
            size = len(body)
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if chunked and size > self.max_bytes:
                    return _answer(self._too_large())
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
        elif chunked and len(body) > self.max_bytes:
            return _answer(self._too_large())
        return await self.fast.answer(route, body)

    async def _routed(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        id_header: tuple[bytes, bytes],
        chunked: bool,
        status: list[int],
    ) -> None:
        """FastAPI's answer, with the request id header; its status is put in ``status``."""

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), id_header]
                status[0] = message["status"]
            await send(message)

        if chunked:  # no declared length: buffer up to the limit, then replay to FastAPI
            messages: list[Message] = []
            size = 0
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    break
                size += len(message.get("body", b""))
                if size > self.max_bytes:
                    status[0] = await _send_answer(_answer(self._too_large()), id_header, send)
                    return
                if not message.get("more_body", False):
                    break

            source = receive

            async def replay() -> Message:
                return messages.pop(0) if messages else await source()

            receive = replay
        await self.routed(scope, receive, send_with_id)


def _answer(response: Response) -> Answer:
    return response.status_code, response.raw_headers, bytes(response.body)


async def _send_answer(answer: Answer, id_header: tuple[bytes, bytes], send: Send) -> int:
    status, headers, body = answer
    headers = [*headers, id_header]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status
