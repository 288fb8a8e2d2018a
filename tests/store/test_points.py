"""Reading a collection's live points into one array: every live point, in id order, whatever
its counter says (writes may commit between the count and the read on PostgreSQL); and a
random sample of them, reading only the vectors drawn."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import event

from app.store import counters
from app.store.collections import create_collection
from app.store.db import Store
from app.store.points import (
    ID_CHUNK,
    delete_points,
    iter_live_points,
    read_live_points,
    sample_live_points,
    upsert_points,
)
from app.store.seq import next_seq

DIM = 3


@pytest.mark.parametrize("counter_off_by", [0, -7, +5])
def test_read_live_points_holds_every_live_point_in_id_order(
    store: Store, counter_off_by: int
) -> None:
    record = create_collection(
        store, name="c", dim=DIM, metric="ip", nlist=None, algorithm="kmeans"
    )
    assert record is not None
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(13_000)]  # 8,666 live: more than one block (8,192)
    vectors = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    with store.write() as session:
        upsert_points(session, record.id, next_seq(session), ids, vectors, [None] * len(ids))
    with store.write() as session:
        delete_points(session, record.id, next_seq(session), ids[::3])
    with store.write() as session:
        # As if writes had moved the count between reading it and reading the points.
        counters.add(session, record.id, live_points=counter_off_by)

    seen: list[float] = []
    with store.read() as session:
        got_ids, got = read_live_points(session, record.id, DIM, seen.append)
        blocks = list(iter_live_points(session, record.id, DIM))
    assert np.array_equal(got_ids, np.concatenate([b[0] for b in blocks]))
    assert np.array_equal(got, np.concatenate([b[1] for b in blocks]))
    assert len(got) == len(ids) - len(ids[::3])
    assert np.all(np.diff(got_ids) > 0)
    kept = np.ones(len(ids), bool)
    kept[::3] = False
    assert np.array_equal(got, vectors[kept])  # in id order: the order they were written
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0, abs=1e-3)


def test_read_live_points_of_an_empty_collection_is_empty(store: Store) -> None:
    record = create_collection(
        store, name="c", dim=DIM, metric="ip", nlist=None, algorithm="kmeans"
    )
    assert record is not None
    with store.read() as session:
        got_ids, got = read_live_points(session, record.id, DIM)
    assert got_ids.shape == (0,) and got.shape == (0, DIM)


def _points(store: Store, name: str, n: int, deleted: int) -> tuple[int, np.ndarray]:
    """A collection of ``n`` points whose first ``deleted`` are deleted; (id, live vectors)."""
    record = create_collection(
        store, name=name, dim=DIM, metric="ip", nlist=None, algorithm="kmeans"
    )
    assert record is not None
    vectors = np.random.default_rng(len(name)).standard_normal((n, DIM)).astype(np.float32)
    names = [f"{name}{i}" for i in range(n)]
    with store.write() as session:
        upsert_points(session, record.id, next_seq(session), names, vectors, [None] * n)
    with store.write() as session:
        delete_points(session, record.id, next_seq(session), names[:deleted])
    return record.id, vectors[deleted:]


def test_a_sample_draws_distinct_live_points_of_its_collection_reading_only_their_vectors(
    store: Store,
) -> None:
    cid, live = _points(store, "c", 3_000, deleted=500)
    _points(store, "other", 100, deleted=0)
    bound: list[int] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "points.vector" in statement:
            bound.append(len(parameters))

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        with store.read() as session:
            sample = sample_live_points(session, cid, DIM, 1_200)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert sample.shape == (1_200, DIM)
    rows = {row.tobytes() for row in sample}
    assert len(rows) == 1_200 and rows <= {row.tobytes() for row in live}
    # The drawn ids only, ID_CHUNK at a time.
    assert sum(bound) == 1_200 and max(bound) <= ID_CHUNK
    with store.read() as session:
        assert np.array_equal(sample_live_points(session, cid, DIM, 1_200), sample)  # seeded
        everything = sample_live_points(session, cid, DIM, 10_000)
    assert np.array_equal(everything, live)  # fewer than asked: all of them, in id order
