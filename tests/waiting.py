"""Waiting on a condition, never on a clock.

A test that needs something to happen in the background (a job to finish, a replica to
catch up, queries to reach the store) polls for that very condition. The timeout is only
a safety net against a hang, generous enough for a loaded machine: it is never what the
test measures, so a slow run is slower, not red.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT_S = 120.0
_FIRST_POLL_S = 0.01
_MAX_POLL_S = 0.2


def wait_until(predicate: Callable[[], T], *, what: str, timeout_s: float = TIMEOUT_S) -> T:
    """Poll ``predicate`` (short, growing pauses) until it returns a truthy value; return it.

    Fails naming ``what`` it waited for if the safety net runs out first.
    """
    deadline = time.monotonic() + timeout_s
    pause = _FIRST_POLL_S
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:.0f} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 1.5, _MAX_POLL_S)
    return value
