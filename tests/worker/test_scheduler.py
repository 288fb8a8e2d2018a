"""The scheduler reads a collection's counters from the store and enqueues what the policy says."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import event

from app.settings import Settings
from app.store import jobs
from app.store.collections import CollectionRecord, create_collection, get_collection
from app.store.db import Store
from app.store.points import upsert_points
from app.store.query_log import LoggedQuery, append_queries, prune_queries
from app.store.seq import next_seq
from bench import debian
from worker.build import run_build
from worker.child import JobChildren
from worker.policy import Policy
from worker.runner import JobRunner
from worker.scheduler import counters, schedule
from worker.train_router import TrainingPlan, run_train_router
from worker.worker import job_handlers

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


@pytest.fixture(scope="module")
def docs() -> np.ndarray:
    return debian.load("cos", n_docs=1200, n_train=1, n_test=1).docs


def _catalyzer_collection(store: Store, docs: np.ndarray) -> None:
    """Collection ``c`` created with a catalyzer kind (nothing to train it on yet), then
    1,200 points written."""
    record = create_collection(
        store,
        name="c",
        dim=384,
        metric="cosine",
        nlist=8,
        algorithm="kmeans",
        quantization={"kind": "catalyzer-sign", "bits": 64},
    )
    assert record is not None
    with store.write() as session:
        ids = [str(i) for i in range(len(docs))]
        upsert_points(session, record.id, next_seq(session), ids, docs, [None] * len(docs))


def _runner(store: Store, **settings: object) -> JobRunner:
    """The worker's own handlers (a catalyzer is trained in a child process), tiny catalyzer."""
    tiny = Settings(database_url=store.url, catalyzer_epochs=2, catalyzer_hidden=128, **settings)
    return JobRunner(store, job_handlers(tiny, JobChildren()), lease_s=60, poll_s=0.05)


def test_the_policy_trains_the_catalyzer_a_collection_was_created_with(
    store: Store, docs: np.ndarray
) -> None:
    _catalyzer_collection(store, docs)
    policy = Policy(build_min_points=1000, catalyzer_min_points=1000)
    runner = _runner(store, catalyzer_min_points=1000)
    assert [j.kind for j in schedule(store, policy)] == ["build"]  # the IVF first
    assert runner.run_once()
    [job] = schedule(store, policy)
    assert job.kind == "quantize"
    assert job.params == {
        "reason": "policy",
        "quantization": {"kind": "catalyzer-sign", "bits": 64},
    }
    assert schedule(store, policy) == []  # pending: not twice
    assert runner.run_once()
    done = jobs.get_job(store, job.id)
    assert done is not None and done.status == jobs.SUCCEEDED, done
    with store.read() as session:
        record = get_collection(session, "c")
    assert record is not None and record.catalyzer_version is not None
    assert schedule(store, policy) == []  # once: the stored catalyzer serves from now on


def test_a_failed_policy_catalyzer_is_not_scheduled_again(store: Store, docs: np.ndarray) -> None:
    """The job refuses (its settings want more points than the policy's): a permanent
    failure, on the job, and the policy does not retry it every round."""
    _catalyzer_collection(store, docs)
    policy = Policy(build_min_points=1000, catalyzer_min_points=1000)
    runner = _runner(store, catalyzer_min_points=2000)
    schedule(store, policy)
    assert runner.run_once()  # build
    [job] = schedule(store, policy)
    assert runner.run_once()
    failed = jobs.get_job(store, job.id)
    assert failed is not None and failed.status == jobs.FAILED
    assert failed.error is not None and "at least 2000 points" in failed.error
    assert schedule(store, policy) == []
