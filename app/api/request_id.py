"""``X-Request-ID``: accepted from the client (or made here), returned, and put on every log
line written while the request runs (app/logs.py); optionally one access-log line each.

Pure ASGI and allocation-light, because every ``/search`` passes through it: one header
scan, one context-variable set, and one header appended to the response start.
"""

from __future__ import annotations

import logging
import random
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import request_id

log = logging.getLogger("vecroute.access")

HEADER = b"x-request-id"
# A client's id is echoed into headers and logs: only short, plain tokens are kept.
_VALID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def incoming_id(scope: Scope) -> str:
    """The client's ``X-Request-ID`` if it is a plain token, else a fresh random one."""
    for name, value in scope["headers"]:
        if name == HEADER and _VALID.fullmatch(value):
            return value.decode()
    # Not a secret, only unique enough to find a request's lines: no system call per request.
    return f"{random.getrandbits(64):016x}"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_id(scope)
        token = request_id.set(rid)
        header = (HEADER, rid.encode())
        status = [500]
        started = time.perf_counter() if self.access_log else 0.0

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.access_log:
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status[0],
                        "ms": round((time.perf_counter() - started) * 1000, 3),
                    },
                )
            request_id.reset(token)
