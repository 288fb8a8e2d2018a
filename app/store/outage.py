"""Telling a store outage (retry later) from a bug, and logging outages without flooding.

Background loops (catch-up, query-log flush, jobs) retry every fraction of a second while the
database is down; a traceback per retry would bury everything else in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# OperationalError: refused or dropped connections, a server shutting down, SQLite busy
# past its timeout. InterfaceError: a connection already closed. PoolTimeout: every pooled
# connection is stuck on a server that does not answer.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the store is unreachable, as opposed to a wrong statement."""
    if isinstance(exc, OUTAGE_ERRORS):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class OutageLog:
    """One warning when a loop first finds the store down, one line when it is back."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what
        self.down = False

    def failed(self, exc: BaseException) -> None:
        if not is_outage(exc):
            self.log.error("%s failed", self.what, exc_info=exc)
        elif not self.down:
            self.down = True
            self.log.warning("%s: store unreachable, retrying (%s)", self.what, exc)

    def succeeded(self) -> None:
        if self.down:
            self.down = False
            self.log.warning("%s: store reachable again", self.what)

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """One round of a background loop: its error is logged as above, never raised."""
        try:
            yield
        except Exception as exc:
            self.failed(exc)
        else:
            self.succeeded()
