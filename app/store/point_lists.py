"""Points by IVF list: what lets a shard replica read only its own lists (issue 19).

Every point row carries ``(list_version, list_no)``: the list its current vector falls in
under clustering ``list_version`` (migration 0011). Writers label rows under the clustering
they hold; ``relabel`` labels the rest for a clustering about to be placed. The pair is
always right for its version, so a reader of clustering V trusts the rows labelled V and
assigns every other row itself (written under another clustering, or before any).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np
from sqlalchemy import ColumnElement, Table, and_, bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session

from app.store.arrays import vectors_from_bytes
from app.store.db import Store, row_blocks
from app.store.models import Point

BLOCK = 8192


@dataclass(frozen=True)
class ListsOf:
    """The lists ``lists`` of clustering ``version``: one shard's part of a collection."""

    collection_id: int
    version: int
    lists: tuple[int, ...]


@dataclass(frozen=True)
class ShardChanges:
    """The writes after a seq that concern one shard, in their latest state."""

    upsert_ids: np.ndarray  # int64: rows in the shard's lists, or not labelled for its version
    upsert_vectors: np.ndarray  # (n, dim) float32, raw as sent
    upsert_lists: np.ndarray  # int64: each one's list, -1 where not labelled for the version
    removed_ids: np.ndarray  # int64: deleted, or labelled for another shard's list
    rows: int  # changed rows seen (with or without their vector)


def _readable(part: ListsOf) -> ColumnElement[bool]:
    """Rows the shard must read: labelled with one of its lists, or not labelled for its
    clustering (the replica assigns those itself). Every branch is a range of the index
    (collection, list_version, list_no) (``<`` and ``>``, not ``!=``), so the server reads
    these rows only, not the collection."""
    return or_(
        and_(Point.list_version == part.version, Point.list_no.in_(part.lists)),
        Point.list_version.is_(None),
        Point.list_version < part.version,
        Point.list_version > part.version,
    )


def _label(part: ListsOf) -> ColumnElement[int]:
    """A row's list under ``part``'s clustering, -1 where it is not labelled for it."""
    return case((Point.list_version == part.version, Point.list_no), else_=-1)


def iter_shard_points(
    session: Session, part: ListsOf, dim: int, block: int = BLOCK
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The live points ``part`` must read, as blocks of (internal ids, raw vectors, lists:
    -1 where the reader must assign the vector itself)."""
    stmt = (
        select(Point.id, Point.vector, _label(part))
        .where(Point.collection_id == part.collection_id, Point.deleted.is_(False))
        .where(_readable(part))
    )
    for rows in row_blocks(session, stmt, block):
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        lists = np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows))
        yield ids, vectors_from_bytes([r[1] for r in rows], dim), lists


def iter_point_lists(
    session: Session, collection_id: int, version: int, dim: int, block: int = BLOCK
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every live point's list under clustering ``version``, without its vector where it is
    labelled for it: blocks of (internal ids, lists: -1 where not labelled for ``version``,
    the raw vectors of those -1 rows in their order, for the reader to assign)."""
    unlabelled = or_(Point.list_version.is_(None), Point.list_version != version)
    stmt = select(
        Point.id,
        _label(ListsOf(collection_id, version, ())),
        case((unlabelled, Point.vector), else_=None),
    ).where(Point.collection_id == collection_id, Point.deleted.is_(False))
    for rows in row_blocks(session, stmt, block):
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        lists = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        yield ids, lists, vectors_from_bytes([r[2] for r in rows if r[2] is not None], dim)


def shard_changes_since(session: Session, after_seq: int, part: ListsOf, dim: int) -> ShardChanges:
    """Every point of the collection written after ``after_seq``: the vectors of those
    ``part`` must read, only the ids of the others (deleted, or now in another's list)."""
    wanted = and_(Point.deleted.is_(False), _readable(part))
    stmt = (
        select(Point.id, case((wanted, Point.vector), else_=None), _label(part))
        .where(Point.collection_id == part.collection_id, Point.seq > after_seq)
        .order_by(Point.seq)
    )
    ups: list[int] = []
    blobs: list[bytes] = []
    lists: list[int] = []
    removed: list[int] = []
    rows = 0
    for pid, blob, list_no in session.execute(stmt):
        rows += 1
        if blob is None:
            removed.append(pid)
        else:
            ups.append(pid)
            blobs.append(blob)
            lists.append(list_no)
    return ShardChanges(
        np.asarray(ups, dtype=np.int64),
        vectors_from_bytes(blobs, dim),
        np.asarray(lists, dtype=np.int64),
        np.asarray(removed, dtype=np.int64),
        rows,
    )


def relabel(
    store: Store,
    collection_id: int,
    version: int,
    dim: int,
    assign: Callable[[np.ndarray], np.ndarray],
    block: int = BLOCK,
) -> int:
    """Label every live point not labelled for clustering ``version`` with its list
    (``assign`` maps raw vectors to list numbers); returns how many rows it read.

    A block at a time, read and written in separate short transactions, and takes no
    write seq: a label is derived, not a change. A row rewritten since it was read keeps
    its writer's label (the update requires the seq it was read at).
    """
    table = cast(Table, Point.__table__)
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.seq == bindparam("b_seq"))
        .values(list_version=version, list_no=bindparam("b_list"))
    )
    last, labelled = 0, 0
    while True:
        with store.read() as session:
            rows = session.execute(
                select(Point.id, Point.seq, Point.vector)
                .where(
                    Point.collection_id == collection_id,
                    Point.deleted.is_(False),
                    Point.id > last,
                    or_(Point.list_version.is_(None), Point.list_version != version),
                )
                .order_by(Point.id)
                .limit(block)
            ).all()
        if not rows:
            return labelled
        lists = assign(vectors_from_bytes([r[2] for r in rows], dim))
        params = [
            {"b_id": r[0], "b_seq": r[1], "b_list": int(list_no)}
            for r, list_no in zip(rows, lists.tolist(), strict=True)
        ]
        with store.write() as session:
            session.execute(stmt, params)
        labelled += len(rows)
        last = rows[-1][0]


def list_sizes(session: Session, collection_id: int, version: int, nlist: int) -> np.ndarray:
    """Live points per list of clustering ``version``, counted from the labels: from the
    list index (collection, list_version, list_no, deleted) alone, without reading a row."""
    sizes = np.zeros(nlist, dtype=np.int64)
    stmt = select(Point.list_no, func.count()).where(
        Point.collection_id == collection_id,
        Point.list_version == version,
        Point.deleted.is_(False),
    )
    rows = session.execute(stmt.group_by(Point.list_no))
    for list_no, count in rows:
        if list_no is not None:  # labelled with a version, always with a list
            sizes[list_no] = count
    return sizes
