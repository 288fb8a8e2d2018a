"""``X-Request-ID``: accepted from the client (or made here), returned, and put on every log
line written while the request runs (app/logs.py); the edge (app/api/edge.py) reads the
header, sets the context variable and appends the header to the response.
"""

from __future__ import annotations

import random
import re

HEADER = b"x-request-id"
# A client's id is echoed into headers and logs: only short, plain tokens are kept.
_VALID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def is_valid(value: bytes) -> bool:
    return _VALID.fullmatch(value) is not None


def request_id_from(value: bytes | None) -> str:
    """The client's id if it sent a valid one (see ``is_valid``), else a fresh random one."""
    if value is not None:
        return value.decode()
    # Not a secret, only unique enough to find a request's lines: no system call per request.
    return f"{random.getrandbits(64):016x}"
