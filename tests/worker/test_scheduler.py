"""The scheduler reads a collection's counters from the store and enqueues what the policy says."""

from __future__ import annotations

import numpy as np
from sqlalchemy import event

from app.store import jobs
from app.store.collections import CollectionRecord, create_collection, get_collection
from app.store.db import Store
from app.store.points import upsert_points
from app.store.query_log import LoggedQuery, append_queries, prune_queries
from app.store.seq import next_seq
from worker.build import run_build
from worker.policy import Policy
from worker.scheduler import counters, schedule
from worker.train_router import TrainingPlan, run_train_router

POLICY = Policy(build_min_points=500, train_min_queries=200, retrain_min_new_queries=300)


def _finish_all(store: Store) -> list[str]:
    kinds = []
    while (job := jobs.claim(store, "test", ["build", "train-router"], lease_s=60)) is not None:
        kinds.append(job.kind)
        jobs.finish(store, job.id, "test", {})
    return kinds


def _collection_with_points(store: Store, seed: int) -> tuple[CollectionRecord, np.ndarray]:
    """Collection ``c``: 600 random 8-d points (returned too), l2, 8 lists once built."""
    record = create_collection(store, name="c", dim=8, metric="l2", nlist=8, algorithm="kmeans")
    assert record is not None
    vectors = np.random.default_rng(seed).standard_normal((600, 8)).astype(np.float32)
    with store.write() as session:
        upsert_points(
            session,
            record.id,
            next_seq(session),
            [str(i) for i in range(600)],
            vectors,
            [None] * 600,
        )
    return record, vectors


def test_policy_jobs_follow_the_collection_lifecycle(store: Store) -> None:
    record, vectors = _collection_with_points(store, seed=0)

    assert [j.kind for j in schedule(store, POLICY)] == ["build"]
    assert schedule(store, POLICY) == []  # already pending: not twice
    assert _finish_all(store) == ["build"]
    run_build(store, "c", {}, lambda _: None)
    assert schedule(store, POLICY) == []  # no queries yet

    append_queries(store, [LoggedQuery(record.id, v, 10) for v in vectors[:250]])
    assert [j.kind for j in schedule(store, POLICY)] == ["train-router"]
    _finish_all(store)
    run_train_router(store, "c", {}, lambda _: None, TrainingPlan(min_queries=200))
    assert schedule(store, POLICY) == []  # trained on everything logged

    append_queries(store, [LoggedQuery(record.id, v, 10) for v in vectors[250:550]])
    with store.read() as session:
        c = counters(session, get_collection(session, "c"))  # type: ignore[arg-type]
    assert c.queries_since_training == 300 and c.router_for_clustering
    assert [j.kind for j in schedule(store, POLICY)] == ["train-router"]


def test_scheduling_never_counts_points_or_logged_queries(store: Store) -> None:
    """A round reads counters kept on write: counting the points table (the vectors) and the
    query log every few seconds would read them whole."""
    record, vectors = _collection_with_points(store, seed=1)
    run_build(store, "c", {}, lambda _: None)
    append_queries(store, [LoggedQuery(record.id, v, 10) for v in vectors[:250]])
    run_train_router(store, "c", {}, lambda _: None, TrainingPlan(min_queries=200))
    append_queries(store, [LoggedQuery(record.id, v, 10) for v in vectors[250:550]])

    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.lower().split()))

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        assert [j.kind for j in schedule(store, POLICY)] == ["train-router"]
        assert prune_queries(store, keep=1000) == 0
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert any("from collections" in s for s in statements)  # the listener did see the round
    counting = [
        s for s in statements if "count(" in s and ("from points" in s or "from query_log" in s)
    ]
    assert counting == []
