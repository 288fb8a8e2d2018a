"""The one ASGI layer every HTTP request passes before FastAPI: request id, metrics, API
keys, body limit and media type, and the fast routes (app/api/fastpath.py), answered here
(or, in ``vecroute serve``, by ``respond_now`` before uvicorn makes an ASGI request of them).

These were four middleware layers, each an awaited call, a closure wrapping ``send`` and a
scan of the headers of its own; one layer reads the headers once, and a fast route's answer
is sent as two ASGI messages with no wrapper around ``send`` at all (only FastAPI's routes
get one, for the request id header and the status). In the server every ``/search`` runs
this on caches that the engine's scan has just flushed, where each frame costs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.auth import ApiKeys
from app.api.fastpath import Answer, FastRoutes
from app.api.metrics import Metrics
from app.api.request_id import HEADER, is_valid, request_id_from
from app.api.responses import problem
from app.logs import request_id

log = logging.getLogger("vecroute.access")
Write = Callable[[int, list[tuple[bytes, bytes]], bytes], None]  # status, headers, body
_LENGTH = b"content-length"
_AUTHORIZATION = b"authorization"
_CONTENT_TYPE = b"content-type"
_JSON = b"application/json"
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class _Head(NamedTuple):
    """What the edge reads from a request's headers, in one pass."""

    length: bytes | None
    authorization: bytes | None
    rid: bytes | None  # the client's request id, if valid
    content_type: bytes | None

    @classmethod
    def read(cls, headers: Iterable[tuple[bytes, bytes]]) -> _Head:
        rid = length = authorization = content_type = None
        for name, value in headers:
            if name == _LENGTH:
                length = value
            elif name == _CONTENT_TYPE:
                content_type = value
            elif name == HEADER and rid is None and is_valid(value):
                rid = value  # the first valid one
            elif name == _AUTHORIZATION and authorization is None:
                authorization = value
        return cls(length, authorization, rid, content_type)

    def refuses_body(self, method: str) -> bool:
        """A body declared as something else than JSON (none declared: read as JSON)."""
        media = self.content_type
        if media is None or media == _JSON or method not in _WITH_BODY:
            return False
        media = media.split(b";", 1)[0].strip().lower()
        return media != _JSON and not (
            media.startswith(b"application/") and media.endswith(b"+json")
        )

    def request_id(self) -> tuple[str, tuple[bytes, bytes]]:
        """The request's id, and the response header carrying it."""
        text = request_id_from(self.rid)
        return text, (HEADER, self.rid if self.rid is not None else text.encode())


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

    def fast_route(self, method: str, path: str) -> str | None:
        """The fast route ``respond_now`` may answer (its template), or None."""
        return self.fast.route(method, path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One HTTP request (the app hands only those to the edge)."""
        head = _Head.read(scope["headers"])
        rid_text, id_header = head.request_id()
        token = request_id.set(rid_text)
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        route = self.fast.route(method, path)
        status = [500]
        try:
            refusal = self._refusal(method, path, head)
            if refusal is not None:
                status[0] = await _send_answer(_answer(refusal), id_header, send)
            elif route is not None:
                answer = await self._fast(route, method, head.length is None, receive)
                if answer is not None:  # else the client went away
                    status[0] = await _send_answer(answer, id_header, send)
            else:
                await self._routed(scope, receive, send, id_header, head.length is None, status)
        finally:
            label = route or str(getattr(scope.get("route"), "path", "unmatched"))
            self._observe(method, path, label, status[0], started)
            request_id.reset(token)

    def respond_now(
        self,
        route: str,
        method: str,
        path: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        write: Write,
    ) -> bool:
        """Answer a request of a fast route (``fast_route``) whose whole body is in, on the
        calling thread (the server's protocol does, app/api/protocol.py), sent by ``write``;
        False, with nothing sent, when it must go through ``__call__``: a search that must
        wait."""
        head = _Head.read(headers)
        rid_text, id_header = head.request_id()
        token = request_id.set(rid_text)
        started = time.perf_counter()
        try:
            refusal = self._refusal(method, path, head)
            answer = _answer(refusal) if refusal is not None else self.fast.answer_now(route, body)
            if answer is None:
                return False
            status, answer_headers, content, after = answer
            write(status, [*answer_headers, id_header], content)
            # After the write: the client has its answer while this is recorded.
            if after is not None:
                after()
            self._observe(method, path, route, status, started)
            return True
        finally:
            request_id.reset(token)

    def _observe(self, method: str, path: str, label: str, status: int, started: float) -> None:
        seconds = time.perf_counter() - started
        self.metrics.observe(method, label, status, seconds)
        if self.access_log:
            extra = {"method": method, "path": path, "status": status}
            log.info("request", extra={**extra, "ms": round(seconds * 1000, 3)})

    def _refusal(self, method: str, path: str, head: _Head) -> Response | None:
        """401/403 without a fitting API key, then 413 for a declared length over the limit,
        then 415 for a body declared as other than JSON."""
        if self.api_keys is not None:
            refusal = self.api_keys.refusal(method, path, head.authorization)
            if refusal is not None:
                return refusal
        length = head.length
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return self._too_large()
        if head.refuses_body(method):
            return problem(
                415,
                "Unsupported media type",
                "request bodies are JSON: send Content-Type: application/json",
                "unsupported-media-type",
            )
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
        messages, too_large = await self._buffered(receive, chunked)
        if too_large:
            return _answer(self._too_large())
        if messages[-1]["type"] != "http.request":
            return None
        body = messages[0].get("body", b"")
        if len(messages) > 1:
            body = b"".join(message.get("body", b"") for message in messages)
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
            messages, too_large = await self._buffered(receive, chunked)
            if too_large:
                status[0] = await _send_answer(_answer(self._too_large()), id_header, send)
                return
            source = receive

            async def replay() -> Message:
                return messages.pop(0) if messages else await source()

            receive = replay
        await self.routed(scope, receive, send_with_id)

    async def _buffered(self, receive: Receive, chunked: bool) -> tuple[list[Message], bool]:
        """The request's messages up to its last body part (or a disconnect), and whether a
        body of no declared length (``chunked``) went over the limit, where reading stops."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages, False
            size += len(message.get("body", b""))
            if chunked and size > self.max_bytes:
                return messages, True
            if not message.get("more_body", False):
                return messages, False


def _answer(response: Response) -> Answer:
    return response.status_code, response.raw_headers, bytes(response.body), None


async def _send_answer(answer: Answer, id_header: tuple[bytes, bytes], send: Send) -> int:
    status, headers, body, after = answer
    headers = [*headers, id_header]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    if after is not None:
        after()
    return status
