"""A response's JSON body, read only after its status code is the one the contract says.

A test that reads ``r.json()["hits"]`` of a 409 fails with a KeyError, or worse compares two
error bodies and passes; ``json_of(r)`` fails with the status and the problem's text instead.
"""

from __future__ import annotations

from typing import Any

import httpx


def json_of(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url.path}: {r.text[:500]}"
    return r.json()
