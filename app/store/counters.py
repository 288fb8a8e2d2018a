"""Per-collection counters kept on write: what the worker's policy and ``/metrics`` read.

Counting rows would read the points table (vectors and all, on SQLite) and the query log
at every scheduling round. Instead every write adds its delta to its collection's row in
its own transaction with ``SET n = n + :delta``: concurrent writers on PostgreSQL queue on
the row lock rather than lose an increment, and a rolled-back write takes its delta with it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.store.models import Collection


@dataclass(frozen=True)
class Counters:
    live_points: int  # points not deleted
    logged_queries: int  # query-log rows kept (retention removes the oldest)
    queries_appended: int  # queries ever logged: the ordinal of the newest one


_COLUMNS = tuple(getattr(Collection, f.name) for f in fields(Counters))


def add(session: Session, collection_id: int, **deltas: int) -> Counters | None:
    """Add ``deltas`` (by counter name) in the caller's transaction; the counters after it,
    or None if there is no such collection. The row stays locked until commit."""
    stmt = (
        update(Collection)
        .where(Collection.id == collection_id)
        .values({name: getattr(Collection, name) + d for name, d in deltas.items()})
        .returning(*_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    row = session.execute(stmt).first()
    return Counters(*row) if row is not None else None


def read(session: Session, collection_id: int, *, lock: bool = False) -> Counters | None:
    """The collection's counters (``lock``: held against other writers until commit)."""
    stmt = select(*_COLUMNS).where(Collection.id == collection_id)
    if lock:
        # FOR NO KEY UPDATE: point inserts (a foreign-key share lock on this row) go on.
        stmt = stmt.with_for_update(key_share=True)
    row = session.execute(stmt).first()
    return Counters(*row) if row is not None else None


def live_points(session: Session, collection_id: int) -> int:
    """The collection's live points as counted on write (0 for one that is gone): what a job
    sizes its reads and checks its minimums by, without counting the points table."""
    kept = read(session, collection_id)
    return max(kept.live_points, 0) if kept is not None else 0
