"""Routers rank lists best first; adaptive routing probes until the probability mass is reached,
or every list whose probability reaches a threshold."""

import numpy as np
import pytest

from app.engine.clustering import Algorithm, train_clustering
from app.engine.metric import Metric
from app.engine.routing import (
    AdaptiveRule,
    CentroidRule,
    Router,
    RouterKind,
    centroid_router,
    top_lists,
)


def test_top_lists_returns_best_first() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [3.0, 2.0, 1.0, 0.0]], dtype=np.float32)
    assert top_lists(scores, 2).tolist() == [[1, 3], [0, 1]]
    assert top_lists(scores, 10).tolist() == [[1, 3, 2, 0], [0, 1, 2, 3]]


def test_centroid_router_with_assignment_rule_routes_documents_to_their_own_list() -> None:
    x = np.random.default_rng(0).standard_normal((3000, 16)).astype(np.float32)
    c = train_clustering(x, 24, Algorithm.KMEANS, Metric.IP, seed=0)
    assignment = centroid_router(c, CentroidRule.ASSIGNMENT)
    assert np.array_equal(assignment.route(x, 1)[:, 0], c.assign(x))
    ip_router = centroid_router(c, CentroidRule.INNER_PRODUCT)
    assert ip_router.bias is None
    assert np.array_equal(ip_router.route(x, 1)[:, 0], (x @ c.representatives.T).argmax(1))


def test_adaptive_routing_probes_until_mass_is_reached() -> None:
    weights = np.eye(4, dtype=np.float32)
    router = Router(RouterKind.LINEAR, weights, None, clustering_version=0)
    confident = np.array([[10.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    ambiguous = np.array([[1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    assert router.route_adaptive(confident, 0.9, 4).tolist() == [[0, -1, -1, -1]]
    assert (router.route_adaptive(ambiguous, 0.9, 4) >= 0).sum() == 4
    assert (router.route_adaptive(ambiguous, 0.5, 4) >= 0).sum() == 2


def test_threshold_routing_probes_every_list_at_least_that_likely() -> None:
    weights = np.eye(4, dtype=np.float32)
    router = Router(RouterKind.LINEAR, weights, None, clustering_version=0)
    # Probabilities ~ [0.475, 0.475, 0.025, 0.025] and [0.9997, 0.0001, 0.0001, 0.0001].
    two_way = np.array([[3.0, 3.0, 0.0, 0.0]], dtype=np.float32)
    confident = np.array([[9.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    threshold = AdaptiveRule.THRESHOLD
    assert (router.route_adaptive(two_way, 0.1, 4, rule=threshold) >= 0).sum() == 2
    assert (router.route_adaptive(two_way, 0.01, 4, rule=threshold) >= 0).sum() == 4
    probed = router.route_adaptive(confident, 0.01, 4, rule=threshold)
    assert probed[probed >= 0].tolist() == [0]
    # A threshold above every probability still probes the best list; 0 probes all of them.
    assert (router.route_adaptive(two_way, 1.0, 4, rule=threshold) >= 0).sum() == 1
    assert (router.route_adaptive(confident, 0.0, 4, rule=threshold) >= 0).sum() == 4
    with pytest.raises(ValueError):
        router.route_adaptive(two_way, 0.0, 4)  # a mass of 0 means nothing


def test_router_rejects_mismatched_bias() -> None:
    with pytest.raises(ValueError):
        Router(RouterKind.LINEAR, np.zeros((3, 2)), np.zeros(4), clustering_version=0)


def test_default_rule_is_inner_product_only_for_ip_kmeans() -> None:
    x = np.random.default_rng(1).standard_normal((500, 8)).astype(np.float32)
    for metric in Metric:
        for algorithm in Algorithm:
            c = train_clustering(x, 8, algorithm, metric, seed=0)
            router = centroid_router(c)
            ip_kmeans = metric is Metric.IP and algorithm is Algorithm.KMEANS
            assert router.params["rule"] == ("inner_product" if ip_kmeans else "assignment")


@pytest.mark.parametrize("nprobe", [1, 5, 24, 40])
def test_one_query_is_routed_as_in_a_batch(nprobe: int) -> None:
    """A single query takes numpy's product and partition, a batch faiss's flat search:
    the same lists, best first (with a bias, and when nprobe reaches nlist)."""
    rng = np.random.default_rng(3)
    weights = rng.standard_normal((24, 16)).astype(np.float32)
    bias = rng.standard_normal(24).astype(np.float32)
    router = Router(RouterKind.LINEAR, weights, bias, clustering_version=0)
    q = rng.standard_normal((20, 16)).astype(np.float32)
    batch = router.route(q, nprobe)
    singles = np.vstack([router.route(q[i : i + 1], nprobe) for i in range(len(q))])
    assert singles.dtype == np.int64 and singles.shape == (20, min(nprobe, 24))
    assert np.array_equal(singles, batch)
    assert np.array_equal(singles, top_lists(router.scores(q), nprobe))
