"""The query log: vectors of served searches, the training data of learned routers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import numpy as np
from sqlalchemy import CursorResult, Table, delete, func, insert, select
from sqlalchemy.orm import Session

from app.store import counters
from app.store.arrays import vector_to_bytes, vectors_from_bytes
from app.store.db import Store
from app.store.models import Collection, QueryLogRow


class LoggedQuery(NamedTuple):
    """A logged search (a named tuple: one is made per search, on the request path)."""

    collection_id: int
    vector: np.ndarray
    k: int


# A Core insert, the timestamp taken by the database: the ORM's bulk insert and a Python
# timestamp per row (formatted per row on SQLite) made a flush cost this process 16.4 us of
# CPU per query on SQLite (16.8 on PostgreSQL), GIL held beside the searches; now 10.2
# (12.7), most of it the driver's own insert.
_APPEND = insert(cast(Table, QueryLogRow.__table__)).values(created_at=func.now())


def append_queries(store: Store, queries: Sequence[LoggedQuery]) -> None:
    """Log the queries with their ordinals; those of collections deleted meanwhile go."""
    if not queries:
        return
    grouped: dict[int, list[LoggedQuery]] = {}
    for q in queries:
        grouped.setdefault(q.collection_id, []).append(q)
    rows: list[dict[str, Any]] = []
    with store.write() as session:
        # Collection rows in id order, so two appenders never wait on each other in a cycle.
        for cid in sorted(grouped):
            mine = grouped[cid]
            after = counters.add(session, cid, logged_queries=len(mine), queries_appended=len(mine))
            if after is None:
                continue
            first = after.queries_appended - len(mine) + 1
            rows.extend(
                {"collection_id": cid, "vector": vector_to_bytes(q.vector), "k": q.k, "ordinal": n}
                for n, q in enumerate(mine, start=first)
            )
        if rows:
            session.execute(_APPEND, rows)


def count_queries(session: Session, collection_id: int) -> int:
    """Logged queries kept for the collection (a counter read, not a count of rows)."""
    now = counters.read(session, collection_id)
    return now.logged_queries if now is not None else 0


def queries_after(session: Session, collection_id: int, query_id: int) -> int:
    """Kept queries of the collection logged after the query ``query_id``.

    Ordinals number a collection's queries in id order, so that is the newest ordinal less
    this one's; if retention removed it (or there is none), every kept query is newer.
    """
    now = counters.read(session, collection_id)
    if now is None:
        return 0
    ordinal = session.execute(
        select(QueryLogRow.ordinal).where(
            QueryLogRow.id == query_id, QueryLogRow.collection_id == collection_id
        )
    ).scalar_one_or_none()
    if ordinal is None:
        return now.logged_queries
    return now.queries_appended - ordinal


def load_queries(
    session: Session, collection_id: int, dim: int, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The most recent ``limit`` logged queries: (log ids, vectors), oldest first."""
    stmt = (
        select(QueryLogRow.id, QueryLogRow.vector)
        .where(QueryLogRow.collection_id == collection_id)
        .order_by(QueryLogRow.id.desc())
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = list(session.execute(stmt))[::-1]
    ids = np.asarray([r[0] for r in rows], dtype=np.int64)
    return ids, vectors_from_bytes([r[1] for r in rows], dim)


def prune_queries(store: Store, keep: int) -> int:
    """Keep the newest ``keep`` logged queries of each collection; returns how many went.

    The counters say which collections are over: the usual round reads them and writes
    nothing (no write lock taken on SQLite), and a prune reads only the excess rows.
    """
    with store.read() as session:
        over = (
            session.execute(
                select(Collection.id)
                .where(Collection.logged_queries > keep)
                .order_by(Collection.id)
            )
            .scalars()
            .all()
        )
    if not over:
        return 0
    removed = 0
    with store.write() as session:
        for cid in over:
            now = counters.read(session, cid, lock=True)
            if now is None or now.logged_queries <= keep:
                continue
            cutoff = session.execute(
                select(QueryLogRow.id)
                .where(QueryLogRow.collection_id == cid)
                .order_by(QueryLogRow.id)
                .offset(now.logged_queries - keep - 1)
                .limit(1)
            ).scalar_one()
            result = session.execute(
                delete(QueryLogRow).where(
                    QueryLogRow.collection_id == cid, QueryLogRow.id <= cutoff
                )
            )
            assert isinstance(result, CursorResult)  # a DELETE's result has a rowcount
            gone = result.rowcount or 0
            counters.add(session, cid, logged_queries=-gone)
            removed += gone
    return removed


def count_by_collection(session: Session) -> dict[int, int]:
    """Logged queries per collection id that has any (the ``/metrics`` query-log size)."""
    stmt = select(Collection.id, Collection.logged_queries).where(Collection.logged_queries > 0)
    return {int(cid): int(n) for cid, n in session.execute(stmt)}
