"""``vecroute serve``'s HTTP/1.1 protocol: uvicorn's (httptools), answering the fast routes
as soon as their body is in.

uvicorn runs every request as an asyncio task: a cycle object, an event, one more turn of
the loop before the app starts, the ASGI ``receive`` and two ``send`` calls, each a socket
write (the head, then the body), each waking the client. A search small enough to run on
the loop gains nothing from any of it, and in the server it runs on the caches the previous
scan flushed, where each step costs several times what it costs warm. This protocol keeps
uvicorn for everything else (parsing, keep-alive, pipelining, flow control, every other
route and request) and hands a fast route's whole request to ``Edge.respond_now`` in the
same call that received its last bytes; the answer goes out as one write. When the edge
declines (a search that must wait for a write or is too big for the loop), the request
becomes an ASGI task as usual, body already read.

It relies on uvicorn's ``HttpToolsProtocol`` and ``RequestResponseCycle`` internals, so
uvicorn is pinned (pyproject.toml); tests/api/test_protocol.py covers them over sockets.
"""

from __future__ import annotations

from typing import Any

from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from app.api.edge import Edge

_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"


class InlineHttpProtocol(HttpToolsProtocol):
    """uvicorn's protocol with ``edge`` answering its fast routes (``for_edge`` makes the
    class uvicorn instantiates per connection)."""

    edge: Edge

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A fast route's request (and its route) waiting for the rest of its body.
        self._held: tuple[RequestResponseCycle, ASGI3Application, str] | None = None

    @classmethod
    def for_edge(cls, edge: Edge) -> type[InlineHttpProtocol]:
        return type(cls.__name__, (cls,), {"edge": edge})

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # A request starts: the keep-alive timer an inline answer earlier in the same bytes
        # armed must not close the connection under it.
        self._unset_keepalive_if_required()
        route = self._holdable_route(cycle, app)
        if route is not None:
            self._held = (cycle, app, route)
        else:
            super()._start_asgi_task(cycle, app)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._held is not None and self._held[0] is self.cycle:
            self._respond()

    def _holdable_route(self, cycle: RequestResponseCycle, app: ASGI3Application) -> str | None:
        """The fast route of a request whose body can be read here, answered without waiting
        for the client to read: no body or a declared length within what uvicorn reads
        before pausing, no ``Expect: 100-continue``, the app itself (not uvicorn's 503), and
        not taken from the pipeline (it would be answered inside the previous answer's
        completion: one level of recursion per pipelined request). None for any other."""
        scope = cycle.scope
        if app is not self.app or cycle.waiting_for_100_continue or self.flow.write_paused:
            return None
        route = self.edge.fast_route(scope["method"], scope["path"]) if cycle.more_body else None
        if route is None:
            return None
        length = chunked = None
        for name, value in scope["headers"]:
            if name == _LENGTH:
                length = value
            elif name == _TRANSFER_ENCODING:
                chunked = value
        if chunked is None and (
            length is None or (length.isdigit() and int(length) <= HIGH_WATER_LIMIT)
        ):
            return route
        return None

    def _respond(self) -> None:
        assert self._held is not None
        cycle, app, route = self._held
        self._held = None
        scope = cycle.scope

        def write(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
            self._write(cycle, status, headers, body)

        body = bytes(cycle.body)
        try:
            answered = self.edge.respond_now(
                route, scope["method"], scope["path"], scope["headers"], body, write
            )
        except Exception:  # a defect: uvicorn would only close the connection
            self.logger.exception("the fast path failed; answering through ASGI")
            if cycle.response_started:
                self.transport.close()
                return
            answered = False
        if not answered:
            super()._start_asgi_task(cycle, app)

    def _write(
        self,
        cycle: RequestResponseCycle,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        """The response in one write, then what uvicorn does when a response completes."""
        parts = [STATUS_LINE[status]]
        for name, value in (*self.server_state.default_headers, *headers):
            parts += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", body)
        cycle.response_started = cycle.response_complete = True
        if not cycle.disconnected:
            self.transport.write(b"".join(parts))
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()
