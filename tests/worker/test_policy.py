"""The automatic policy builds, reclusters, retrains and trains catalyzers exactly when its
thresholds say."""

from worker.policy import CollectionCounters, JobKind, Policy, due_jobs

POLICY = Policy(
    build_min_points=1000,
    train_min_queries=100,
    retrain_min_new_queries=500,
    catalyzer_min_points=3000,
)


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


def test_trains_a_wanted_catalyzer_once_built_with_enough_points() -> None:
    wanted = {"catalyzer_wanted": True}
    assert due_jobs(counters(points=2999, **wanted), POLICY) == []
    assert due_jobs(counters(points=3000, points_at_clustering=3000, **wanted), POLICY) == [
        JobKind.QUANTIZE
    ]
    # not before the first clustering: the build comes first, the catalyzer after it
    unbuilt = counters(points=3000, points_at_clustering=None, **wanted)
    assert due_jobs(unbuilt, POLICY) == [JobKind.BUILD]
    building = counters(points=3000, pending=frozenset({JobKind.BUILD}), **wanted)
    assert due_jobs(building, POLICY) == []


def test_never_trains_a_catalyzer_twice_or_unasked() -> None:
    pending = frozenset({JobKind.QUANTIZE})
    assert due_jobs(counters(points=3500, catalyzer_wanted=True, pending=pending), POLICY) == []
    assert due_jobs(counters(points=3500, catalyzer_wanted=False), POLICY) == []
