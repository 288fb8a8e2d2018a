"""The counters kept on write equal the rows they stand for, whatever the order of writes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.store import counters
from app.store.collections import create_collection, delete_collection
from app.store.db import Store
from app.store.models import Point, QueryLogRow
from app.store.points import delete_points, upsert_points
from app.store.query_log import (
    LoggedQuery,
    append_queries,
    count_by_collection,
    prune_queries,
    queries_after,
)
from app.store.seq import next_seq

DIM = 4
IDS = [f"p{i}" for i in range(40)]


def _true_counts(session: Session, cid: int) -> tuple[int, int]:
    points = select(func.count()).where(Point.collection_id == cid, Point.deleted.is_(False))
    logged = select(func.count()).where(QueryLogRow.collection_id == cid)
    return int(session.execute(points).scalar_one()), int(session.execute(logged).scalar_one())


def _upsert(store: Store, cid: int, ids: list[str], rng: np.random.Generator) -> None:
    vectors = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    with store.write() as session:
        upsert_points(session, cid, next_seq(session), ids, vectors, [None] * len(ids))


def _delete(store: Store, cid: int, ids: list[str]) -> None:
    with store.write() as session:
        delete_points(session, cid, next_seq(session), ids)


def _check(store: Store, cids: list[int], rng: np.random.Generator) -> None:
    with store.read() as session:
        for cid in cids:
            kept = counters.read(session, cid)
            assert kept is not None
            assert (kept.live_points, kept.logged_queries) == _true_counts(session, cid)
            # "since the query x" for a kept query, a pruned one and none at all
            log_ids = (
                session.execute(select(QueryLogRow.id).where(QueryLogRow.collection_id == cid))
                .scalars()
                .all()
            )
            for after in [0, *rng.choice(log_ids, size=min(3, len(log_ids)), replace=False)]:
                newer = sum(1 for i in log_ids if i > after)
                assert queries_after(session, cid, int(after)) == newer
        assert count_by_collection(session) == {
            cid: n for cid in cids if (n := _true_counts(session, cid)[1]) > 0
        }


def test_counters_follow_a_random_sequence_of_writes(store: Store) -> None:
    rng = np.random.default_rng(7)
    cids = []
    for name in ("a", "b"):
        record = create_collection(
            store, name=name, dim=DIM, metric="ip", nlist=None, algorithm="kmeans"
        )
        assert record is not None
        cids.append(record.id)
    for _ in range(60):
        cid = int(rng.choice(cids))
        step = rng.integers(4)
        if step == 0:  # new, live and deleted ids alike
            _upsert(store, cid, list(rng.choice(IDS, size=rng.integers(1, 12), replace=False)), rng)
        elif step == 1:  # some of them missing or deleted already
            _delete(store, cid, list(rng.choice(IDS, size=rng.integers(1, 12))))
        elif step == 2:  # one flush holds queries of both collections
            queries = [
                LoggedQuery(int(rng.choice(cids)), rng.standard_normal(DIM).astype(np.float32), 10)
                for _ in range(rng.integers(1, 20))
            ]
            append_queries(store, queries)
        else:
            prune_queries(store, keep=int(rng.integers(0, 30)))
        _check(store, cids, rng)


def test_queries_of_a_deleted_collection_are_not_logged(store: Store) -> None:
    kept = create_collection(
        store, name="kept", dim=DIM, metric="ip", nlist=None, algorithm="kmeans"
    )
    gone = create_collection(
        store, name="gone", dim=DIM, metric="ip", nlist=None, algorithm="kmeans"
    )
    assert kept is not None and gone is not None
    delete_collection(store, "gone")
    vector = np.ones(DIM, dtype=np.float32)
    append_queries(store, [LoggedQuery(kept.id, vector, 10), LoggedQuery(gone.id, vector, 10)])
    with store.read() as session:
        assert counters.read(session, kept.id) == counters.Counters(0, 1, 1)
        assert count_by_collection(session) == {kept.id: 1}
        assert counters.live_points(session, gone.id) == 0
        logged = session.execute(select(QueryLogRow.vector, QueryLogRow.created_at)).one()
    assert logged.vector == vector.tobytes() and logged.created_at is not None  # the store's clock


def test_concurrent_writers_keep_exact_counters(store: Store) -> None:
    """Flushes, point writes and retention in parallel threads: no increment lost, no
    deadlock between the collections' rows (PostgreSQL row locks; SQLite's write lock)."""
    cids = []
    for name in ("a", "b"):
        record = create_collection(
            store, name=name, dim=DIM, metric="ip", nlist=None, algorithm="kmeans"
        )
        assert record is not None
        cids.append(record.id)

    def flusher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(15):
            batch = [
                LoggedQuery(int(rng.choice(cids)), rng.standard_normal(DIM).astype(np.float32), 10)
                for _ in range(8)
            ]
            append_queries(store, batch)

    def writer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(15):
            cid = int(rng.choice(cids))
            ids = list(rng.choice(IDS, size=6, replace=False))
            if rng.random() < 0.6:
                _upsert(store, cid, ids, rng)
            else:
                _delete(store, cid, ids)

    def pruner(_: int) -> None:
        for keep in range(30, 0, -2):
            prune_queries(store, keep=keep)

    with ThreadPoolExecutor(max_workers=5) as pool:
        futures = [
            pool.submit(f, seed)
            for seed, f in enumerate([flusher, flusher, writer, writer, pruner])
        ]
        for f in futures:
            f.result(timeout=120)
    _check(store, cids, np.random.default_rng(0))
