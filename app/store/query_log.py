"""The query log: vectors of served searches, the training data of learned routers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import CursorResult, delete, func, insert, select
from sqlalchemy.orm import Session

from app.store.arrays import vector_to_bytes, vectors_from_bytes
from app.store.db import Store
from app.store.models import QueryLogRow


@dataclass(frozen=True)
class LoggedQuery:
    collection_id: int
    vector: np.ndarray
    k: int


def append_queries(store: Store, queries: Sequence[LoggedQuery]) -> None:
    if not queries:
        return
    rows = [
        {"collection_id": q.collection_id, "vector": vector_to_bytes(q.vector), "k": q.k}
        for q in queries
    ]
    with store.write() as session:
        session.execute(insert(QueryLogRow), rows)


def count_queries(session: Session, collection_id: int, after_id: int = 0) -> int:
    stmt = select(func.count()).where(
        QueryLogRow.collection_id == collection_id, QueryLogRow.id > after_id
    )
    return int(session.execute(stmt).scalar_one())


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
    """Keep the newest ``keep`` logged queries of each collection; returns how many went."""
    removed = 0
    with store.write() as session:
        for cid in session.execute(select(QueryLogRow.collection_id).distinct()).scalars():
            cutoff = session.execute(
                select(QueryLogRow.id)
                .where(QueryLogRow.collection_id == cid)
                .order_by(QueryLogRow.id.desc())
                .offset(keep)
                .limit(1)
            ).scalar_one_or_none()
            if cutoff is not None:
                result = session.execute(
                    delete(QueryLogRow).where(
                        QueryLogRow.collection_id == cid, QueryLogRow.id <= cutoff
                    )
                )
                assert isinstance(result, CursorResult)  # a DELETE's result has a rowcount
                removed += result.rowcount or 0
    return removed


def count_by_collection(session: Session) -> dict[int, int]:
    """Logged queries per collection id (the ``/metrics`` query-log size)."""
    stmt = select(QueryLogRow.collection_id, func.count()).group_by(QueryLogRow.collection_id)
    return {int(cid): int(n) for cid, n in session.execute(stmt)}
