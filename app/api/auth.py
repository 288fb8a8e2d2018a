"""API keys: a full-access key and an optional read-only key, checked before any routing.

Checked by the edge (app/api/edge.py) before any routing, so every route, fast or not,
passes here. Keys are compared with ``hmac.compare_digest`` against every
configured key without stopping at the first match, so the time taken says nothing about
which key (or how much of one) matched; it only depends on the lengths.
"""

from __future__ import annotations

import hmac

from starlette.responses import Response

from app.api.responses import problem

OPEN_PATHS = frozenset({"/healthz"})
# The console's page and static files carry no data (it reads everything through the API
# with the user's key), and must load before it can ask for that key.
CONSOLE_PAGE, CONSOLE_FILES = "/", "/console/"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# POST routes that only read (a search is logged for router training, which is not a
# change a reader can direct).
READ_POSTS = frozenset({"/search", "/search/batch"})


def is_read(method: str, path: str) -> bool:
    return method in READ_METHODS or (method == "POST" and path in READ_POSTS)


def is_open(method: str, path: str) -> bool:
    if path in OPEN_PATHS:
        return True
    return method in READ_METHODS and (path == CONSOLE_PAGE or path.startswith(CONSOLE_FILES))


def bearer_token(authorization: bytes | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header value (scheme
    case-insensitive)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else None


def matches_any(token: bytes, keys: tuple[bytes, ...]) -> bool:
    found = False
    for key in keys:
        found |= hmac.compare_digest(token, key)
    return found


class ApiKeys:
    """401 without a valid key, 403 for a read-only key on a write; /healthz and the
    console's static files stay open."""

    def __init__(self, api_keys: tuple[str, ...], read_api_keys: tuple[str, ...] = ()) -> None:
        if not api_keys:
            raise ValueError("ApiKeys needs at least one full-access key")
        self.full = tuple(k.encode() for k in api_keys)
        self.read = tuple(k.encode() for k in read_api_keys)

    def refusal(self, method: str, path: str, authorization: bytes | None) -> Response | None:
        """The problem response refusing this request, or None to let it through."""
        if is_open(method, path):
            return None
        token = bearer_token(authorization)
        if token is not None and matches_any(token, self.full):
            return None
        if token is not None and matches_any(token, self.read):
            if is_read(method, path):
                return None
            return problem(
                403,
                "Forbidden",
                "this key is read-only: it may search and read, not write",
                "read-only-key",
            )
        return problem(
            401,
            "Unauthorized",
            "a valid 'Authorization: Bearer <key>' header is required",
            "unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="vecroute"'},
        )
