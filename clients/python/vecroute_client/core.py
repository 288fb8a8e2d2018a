"""What the sync and async clients share: connection settings, read-your-writes, answers."""

from __future__ import annotations

from typing import Any, TypeVar, cast

import httpx
import numpy as np
import orjson

from vecroute_client.calls import Call
from vecroute_client.errors import NotFoundError, raise_for_problem

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000"
_JSON = {"content-type": "application/json"}
# numpy arrays and scalars as JSON numbers; payload keys that are not strings as strings,
# as the standard json module writes them.
_ENCODING = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def encode(body: Any) -> bytes:
    """A request body as JSON, by orjson: many times faster than the standard json module
    httpx's ``json=`` uses, on vectors most of all."""
    return orjson.dumps(body, default=_plain, option=_ENCODING)


def _plain(value: Any) -> Any:
    """What orjson leaves to us: arrays it does not take as they are (not C-contiguous, or
    of another dtype), as lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class Session:
    """Settings and the last write sequence number this client was given.

    With ``read_your_writes`` (the default) every search carries ``min_seq`` = that number,
    so a replica behind a load balancer answers only once it has applied this client's
    writes (the server waits, bounded, then answers 503 ``min-seq-not-reached``).
    """

    def __init__(self, url: str, api_key: str | None, read_your_writes: bool) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.read_your_writes = read_your_writes
        self.last_seq: int | None = None

    def client_options(self, timeout: float) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return {"base_url": self.url, "headers": headers, "timeout": timeout}

    def request(self, call: Call[Any]) -> dict[str, Any]:
        body = call.body
        if (
            body is not None
            and call.after_writes
            and self.read_your_writes
            and self.last_seq is not None
            and body.get("min_seq") is None
        ):
            body = {**body, "min_seq": self.last_seq}
        if body is None:
            return {"method": call.method, "url": call.path}
        return {"method": call.method, "url": call.path, "content": encode(body), "headers": _JSON}

    def answer(self, call: Call[T], response: httpx.Response) -> T:
        try:
            raise_for_problem(response)
        except NotFoundError as exc:
            if exc.slug == call.absent:  # only set on calls typed Call[X | None]
                return cast(T, None)
            raise
        result = call.read(response)
        seq = getattr(result, "seq", None)
        if isinstance(seq, int):
            self.observe(seq)
        return result

    def observe(self, seq: int) -> None:
        if self.last_seq is None or seq > self.last_seq:
            self.last_seq = seq
