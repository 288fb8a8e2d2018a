"""The automatic policy builds, reclusters and retrains exactly when its thresholds say."""

from worker.policy import CollectionCounters, JobKind, Policy, due_jobs

POLICY = Policy(build_min_points=1000, train_min_queries=100, retrain_min_new_queries=500)


def counters(**kw: object) -> CollectionCounters:
    base: dict[str, object] = {
        "points": 2000,
        "points_at_clustering": 2000,
        "router_for_clustering": True,
        "queries_logged": 0,
        "queries_since_training": 0,
    }
    return CollectionCounters(**(base | kw))  # type: ignore[arg-type]


def test_small_collection_stays_exact() -> None:
    assert due_jobs(counters(points=999, points_at_clustering=None), POLICY) == []


def test_builds_once_large_enough() -> None:
    assert due_jobs(counters(points=1000, points_at_clustering=None), POLICY) == [JobKind.BUILD]


def test_reclusters_after_doubling_or_halving() -> None:
    assert due_jobs(counters(points=3999), POLICY) == []
    assert due_jobs(counters(points=4000), POLICY) == [JobKind.BUILD]
    assert due_jobs(counters(points=4000, points_at_clustering=8000), POLICY) == [JobKind.BUILD]


def test_does_not_recluster_below_the_build_threshold() -> None:
    assert due_jobs(counters(points=900, points_at_clustering=2000), POLICY) == []


def test_never_enqueues_a_pending_job_twice() -> None:
    pending = frozenset({JobKind.BUILD})
    assert due_jobs(counters(points=5000, pending=pending), POLICY) == []


def test_trains_a_router_for_a_fresh_clustering_once_queries_are_logged() -> None:
    fresh = counters(router_for_clustering=False, queries_logged=99)
    assert due_jobs(fresh, POLICY) == []
    fresh = counters(router_for_clustering=False, queries_logged=100)
    assert due_jobs(fresh, POLICY) == [JobKind.TRAIN_ROUTER]


def test_retrains_after_enough_new_queries() -> None:
    assert due_jobs(counters(queries_logged=900, queries_since_training=499), POLICY) == []
    assert due_jobs(counters(queries_logged=900, queries_since_training=500), POLICY) == [
        JobKind.TRAIN_ROUTER
    ]


def test_disabled_policy_does_nothing() -> None:
    off = Policy(enabled=False)
    assert due_jobs(counters(points=10**6, points_at_clustering=None), off) == []
