"""Points: atomic batch upserts, tombstone deletes, and the change feed replicas read.

A delete keeps the row with ``deleted = true`` and a new seq, so a replica reading
``seq > last`` sees the deletion as a change instead of a silently missing row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.store import counters
from app.store.arrays import vector_to_bytes, vectors_from_bytes
from app.store.db import row_blocks
from app.store.models import Collection, Point

ID_CHUNK = 500


@dataclass(frozen=True)
class PointRecord:
    internal_id: int
    external_id: str
    vector: np.ndarray
    payload: Any


@dataclass(frozen=True)
class PointChanges:
    """Latest state of changed points in one collection: upserted vectors and removed ids."""

    collection_id: int
    upsert_ids: np.ndarray  # int64
    upsert_vectors: np.ndarray  # (n, dim) float32, raw as sent
    upsert_labels: list[tuple[str, Any]]  # (external id, payload) per upserted point
    removed_ids: np.ndarray  # int64


class WrongDimension(ValueError):
    """A batch whose vectors do not have the collection's dimension: nothing is stored."""


def upsert_points(
    session: Session,
    collection_id: int,
    seq: int,
    external_ids: Sequence[str],
    vectors: np.ndarray,
    payloads: Sequence[Any],
    lists: tuple[int, np.ndarray] | None = None,
) -> np.ndarray:
    """Store a batch (unique external ids) under ``seq``; internal ids in batch order.

    An existing id keeps its internal id, so the index replaces the vector in place.
    ``lists``: (clustering version, each vector's list under it), the label shard replicas
    read by (``point_lists.py``); None before any clustering. Raises ``WrongDimension``
    unless the vectors have the collection row's dimension.
    """
    dim = session.execute(
        select(Collection.dim).where(Collection.id == collection_id)
    ).scalar_one_or_none()
    if dim is not None and (vectors.ndim != 2 or vectors.shape[1] != dim):
        raise WrongDimension(
            f"vectors have dimension {vectors.shape[-1]}, the collection has dimension {dim}"
        )
    revived = len(external_ids) - _live_among(session, collection_id, external_ids)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(cast(Table, Point.__table__))
    stmt = stmt.on_conflict_do_update(
        index_elements=["collection_id", "external_id"],
        set_={
            "vector": stmt.excluded.vector,
            "payload": stmt.excluded.payload,
            "seq": stmt.excluded.seq,
            "deleted": False,
            "list_version": stmt.excluded.list_version,
            "list_no": stmt.excluded.list_no,
        },
    )
    version, list_nos = (None, [None] * len(external_ids)) if lists is None else lists
    rows = [
        {
            "collection_id": collection_id,
            "external_id": ext,
            "vector": vector_to_bytes(vec),
            "payload": payload,
            "seq": seq,
            "deleted": False,
            "list_version": version,
            "list_no": None if list_no is None else int(list_no),
        }
        for ext, vec, payload, list_no in zip(
            external_ids, vectors, payloads, list(list_nos), strict=True
        )
    ]
    session.execute(stmt, rows)
    stored = session.execute(
        select(Point.external_id, Point.id).where(
            Point.collection_id == collection_id, Point.seq == seq
        )
    )
    found = {ext: pid for ext, pid in stored}
    counters.add(session, collection_id, live_points=revived)
    return np.fromiter((found[e] for e in external_ids), dtype=np.int64, count=len(external_ids))


def delete_points(
    session: Session, collection_id: int, seq: int, external_ids: Sequence[str]
) -> np.ndarray:
    """Tombstone the live points among ``external_ids``; their internal ids."""
    removed: list[int] = []
    unique = list(dict.fromkeys(external_ids))
    for start in range(0, len(unique), ID_CHUNK):
        chunk = unique[start : start + ID_CHUNK]
        result = session.execute(
            update(Point)
            .where(
                Point.collection_id == collection_id,
                Point.external_id.in_(chunk),
                Point.deleted.is_(False),
            )
            .values(deleted=True, seq=seq)
            .returning(Point.id)
        )
        removed.extend(result.scalars())
    if removed:
        counters.add(session, collection_id, live_points=-len(removed))
    return np.asarray(removed, dtype=np.int64)


def _live_among(session: Session, collection_id: int, external_ids: Sequence[str]) -> int:
    """How many of these (unique) ids are live points: index lookups, never a table scan."""
    live = 0
    for start in range(0, len(external_ids), ID_CHUNK):
        stmt = select(func.count()).where(
            Point.collection_id == collection_id,
            Point.external_id.in_(external_ids[start : start + ID_CHUNK]),
            Point.deleted.is_(False),
        )
        live += int(session.execute(stmt).scalar_one())
    return live


def get_point(
    session: Session, collection_id: int, external_id: str, dim: int
) -> PointRecord | None:
    row = session.execute(
        select(Point).where(
            Point.collection_id == collection_id,
            Point.external_id == external_id,
            Point.deleted.is_(False),
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    return PointRecord(
        row.id, row.external_id, vectors_from_bytes([row.vector], dim)[0], row.payload
    )


def list_points(
    session: Session, collection_id: int, dim: int, after: str | None, limit: int
) -> list[PointRecord]:
    """Up to ``limit`` live points in external-id order, starting after the id ``after``.

    Ordered by external id so a page is read off the (collection, external id) unique index
    and a cursor stays valid across writes: an upsert never moves a point.
    """
    stmt = select(Point).where(Point.collection_id == collection_id, Point.deleted.is_(False))
    if after is not None:
        stmt = stmt.where(Point.external_id > after)
    rows = session.execute(stmt.order_by(Point.external_id).limit(limit)).scalars().all()
    vectors = vectors_from_bytes([r.vector for r in rows], dim)
    return [
        PointRecord(r.id, r.external_id, vector, r.payload)
        for r, vector in zip(rows, vectors, strict=True)
    ]


def get_labels(session: Session, collection_id: int) -> dict[int, tuple[str, Any]]:
    """Internal id to (external id, payload) for every live point, without the vectors."""
    rows = session.execute(
        select(Point.id, Point.external_id, Point.payload).where(
            Point.collection_id == collection_id, Point.deleted.is_(False)
        )
    )
    return {pid: (ext, payload) for pid, ext, payload in rows}


def iter_live_points(
    session: Session, collection_id: int, dim: int, block: int = 8192
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every live point as blocks of (internal ids, raw vectors), in id order."""
    stmt = (
        select(Point.id, Point.vector)
        .where(Point.collection_id == collection_id, Point.deleted.is_(False))
        .order_by(Point.id)
    )
    for part in row_blocks(session, stmt, block):
        ids = np.fromiter((r[0] for r in part), dtype=np.int64, count=len(part))
        yield ids, vectors_from_bytes([r[1] for r in part], dim)


def read_live_points(
    session: Session,
    collection_id: int,
    dim: int,
    progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Every live point's internal id and raw vector, in id order, read block by block into
    arrays sized by the collection's live-point counter: a large collection is never held
    twice, as its blocks and their concatenation. Writes committed while it reads (each
    statement has its own snapshot on PostgreSQL) may move the count: the arrays then grow,
    or are cut to what was read. ``progress``: the share read so far."""
    expected = counters.live_points(session, collection_id)
    ids = np.empty(expected, np.int64)
    vectors = np.empty((expected, dim), np.float32)
    n = 0
    for block_ids, block in iter_live_points(session, collection_id, dim):
        end = n + len(block_ids)
        if end > len(ids):
            ids, vectors = _grown(ids, end), _grown(vectors, end)
        ids[n:end], vectors[n:end] = block_ids, block
        n = end
        if progress is not None:
            progress(min(1.0, n / max(expected, 1)))
    return ids[:n], vectors[:n]


def sample_live_points(session: Session, collection_id: int, dim: int, n: int) -> np.ndarray:
    """The raw vectors of ``n`` live points drawn at random (seeded, from the ids in order),
    all of them if fewer, in id order.

    The ids are read first (on SQLite from the list index alone, which holds ``deleted``
    and the rowid), then only the vectors drawn, by id, ``ID_CHUNK`` at a time: the sample
    costs its own size to read, not the collection's. Points deleted between the two reads
    are left out."""
    live = Point.deleted.is_(False)
    stmt = select(Point.id).where(Point.collection_id == collection_id, live)
    ids = np.sort(np.fromiter(session.execute(stmt).scalars(), np.int64))
    if len(ids) > n:
        ids = np.sort(np.random.default_rng(0).choice(ids, n, replace=False))
    # By id alone (ids are the table's, not a collection's): SQLite, also given the
    # collection, walked its index for every chunk (15x slower).
    drawn = (
        select(Point.vector)
        .where(Point.id.in_(bindparam("ids", expanding=True)), live)
        .order_by(Point.id)
    )
    blobs: list[bytes] = []
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start : start + ID_CHUNK].tolist()
        blobs.extend(session.execute(drawn, {"ids": chunk}).scalars())
    return vectors_from_bytes(blobs, dim)


def _grown(a: np.ndarray, at_least: int) -> np.ndarray:
    out = np.empty((max(at_least, len(a) + len(a) // 8), *a.shape[1:]), a.dtype)
    out[: len(a)] = a
    return out


def changes_since(
    session: Session, after_seq: int, dims: dict[int, int], collection_id: int | None = None
) -> list[PointChanges]:
    """Latest state of every point written after ``after_seq``, grouped by collection.

    ``dims`` maps the collections of interest to their dimension; others are skipped.
    """
    stmt = select(
        Point.collection_id, Point.id, Point.deleted, Point.vector, Point.external_id, Point.payload
    ).where(Point.seq > after_seq)
    if collection_id is not None:
        stmt = stmt.where(Point.collection_id == collection_id)
    grouped: dict[int, tuple[list[int], list[bytes], list[tuple[str, Any]], list[int]]] = {}
    for cid, pid, deleted, blob, ext, payload in session.execute(stmt.order_by(Point.seq)):
        if cid not in dims:
            continue
        ups, blobs, labels, removed = grouped.setdefault(cid, ([], [], [], []))
        if deleted:
            removed.append(pid)
        else:
            ups.append(pid)
            blobs.append(blob)
            labels.append((ext, payload))
    return [
        PointChanges(
            collection_id=cid,
            upsert_ids=np.asarray(ups, dtype=np.int64),
            upsert_vectors=vectors_from_bytes(blobs, dims[cid]),
            upsert_labels=labels,
            removed_ids=np.asarray(removed, dtype=np.int64),
        )
        for cid, (ups, blobs, labels, removed) in grouped.items()
    ]
