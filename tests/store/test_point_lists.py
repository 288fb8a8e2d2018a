"""Points labelled with their list: a shard reads its lists' rows and every row not labelled
for its clustering, follows the changes reading only those vectors, and a relabelling
never overwrites the label of a row rewritten meanwhile."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import event

from app.store.collections import create_collection
from app.store.db import Store
from app.store.point_lists import (
    ListsOf,
    iter_shard_points,
    list_sizes,
    relabel,
    shard_changes_since,
)
from app.store.points import delete_points, upsert_points
from app.store.seq import next_seq

VERSION = 3


def _collection(store: Store) -> int:
    record = create_collection(store, name="c", dim=2, metric="ip", nlist=None, algorithm="kmeans")
    assert record is not None
    return record.id


def _write(
    store: Store, cid: int, names: list[str], lists: tuple[int, np.ndarray] | None
) -> tuple[int, np.ndarray]:
    vectors = np.arange(2 * len(names), dtype=np.float32).reshape(-1, 2)
    with store.write() as session:
        seq = next_seq(session)
        ids = upsert_points(session, cid, seq, names, vectors, [None] * len(names), lists)
    return seq, ids


def _read(store: Store, part: ListsOf) -> dict[int, int]:
    """Each point the shard reads, with its list (-1: not labelled for its clustering)."""
    with store.read() as session:
        blocks = list(iter_shard_points(session, part, 2, block=2))
    return {
        pid: list_no
        for ids, _, lists in blocks
        for pid, list_no in zip(ids.tolist(), lists.tolist(), strict=True)
    }


def test_a_shard_reads_its_lists_and_the_rows_not_labelled_for_its_clustering(
    store: Store,
) -> None:
    cid = _collection(store)
    _, labelled = _write(store, cid, ["a", "b", "c", "d"], (VERSION, np.array([0, 1, 2, 3])))
    _, older = _write(store, cid, ["e"], (VERSION - 1, np.array([0])))
    _, unlabelled = _write(store, cid, ["f"], None)
    with store.write() as session:
        delete_points(session, cid, next_seq(session), ["a"])

    got = _read(store, ListsOf(cid, VERSION, (0, 2)))

    # "a" (list 0) is deleted; "e" and "f" are for the reader to assign.
    assert got == {labelled[2]: 2, older[0]: -1, unlabelled[0]: -1}
    with store.read() as session:
        np.testing.assert_array_equal(list_sizes(session, cid, VERSION, 5), [0, 1, 1, 1, 0])


def test_list_sizes_are_counted_from_the_index_without_reading_a_row(store: Store) -> None:
    """A row holds its vector: counting a list's live points must not read rows for their
    ``deleted`` flag (a shard replica sizes its lists so, the coordinator places them)."""
    cid = _collection(store)
    _write(store, cid, ["a", "b", "c"], (VERSION, np.array([0, 1, 1])))
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "count(" in statement.lower():
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        with store.read() as session:
            list_sizes(session, cid, VERSION, 4)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    [(statement, parameters)] = statements
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            assert "USING COVERING INDEX ix_points_list_live" in str(rows.all())
        else:  # the planner's choice on a tiny table aside: only the index is needed
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_bitmapscan = off")
            rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
            assert "Index Only Scan using ix_points_list_live" in str(rows.all())


def test_changes_carry_vectors_only_for_the_shard_and_ids_for_the_rest(store: Store) -> None:
    cid = _collection(store)
    seq, ids = _write(store, cid, ["a", "b"], (VERSION, np.array([0, 1])))
    part = ListsOf(cid, VERSION, (0,))
    _, moved = _write(store, cid, ["a"], (VERSION, np.array([1])))  # a leaves list 0
    _, fresh = _write(store, cid, ["c"], (VERSION, np.array([0])))
    _, unlabelled = _write(store, cid, ["d"], None)
    with store.write() as session:
        delete_points(session, cid, next_seq(session), ["b"])

    with store.read() as session:
        changes = shard_changes_since(session, seq, part, 2)

    assert changes.rows == 4
    upserts = zip(changes.upsert_ids.tolist(), changes.upsert_lists.tolist(), strict=True)
    assert dict(upserts) == {fresh[0]: 0, unlabelled[0]: -1}
    assert changes.upsert_vectors.shape == (2, 2)
    np.testing.assert_array_equal(np.sort(changes.removed_ids), np.sort(np.r_[moved, ids[1]]))


def test_relabel_labels_every_other_row_but_never_one_rewritten_since_it_was_read(
    store: Store,
) -> None:
    cid = _collection(store)
    _, ids = _write(store, cid, ["a", "b", "c"], None)
    _write(store, cid, ["d"], (VERSION, np.array([4])))  # labelled already: not read again
    calls: list[int] = []

    def assign(vectors: np.ndarray) -> np.ndarray:
        if not calls:  # a writer rewrites "a" between the read and the labels' write
            _write(store, cid, ["a"], (VERSION - 1, np.array([9])))
        calls.append(len(vectors))
        return np.full(len(vectors), 7)

    assert relabel(store, cid, VERSION, 2, assign, block=2) == 3
    assert calls == [2, 1]
    with store.read() as session:
        np.testing.assert_array_equal(list_sizes(session, cid, VERSION, 8), [0] * 4 + [1, 0, 0, 2])
    # "a" keeps its writer's label: read by the shards of VERSION, which assign it themselves.
    assert _read(store, ListsOf(cid, VERSION, ())) == {ids[0]: -1}
