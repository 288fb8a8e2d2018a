"""Clusterings assign every vector by their stored rule, consistent with how they were built."""

import numpy as np
import pytest

from app.engine import clustering
from app.engine.clustering import Algorithm, auto_nlist, train_clustering
from app.engine.metric import Metric, prepare


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((4000, 24)).astype(np.float32)


@pytest.mark.parametrize("metric", list(Metric))
def test_kmeans_assigns_to_nearest_centroid_in_l2(vectors: np.ndarray, metric: Metric) -> None:
    x = prepare(vectors, metric)
    c = train_clustering(x, 32, Algorithm.KMEANS, metric, seed=1)
    d2 = ((x[:, None, :] - c.representatives[None, :, :]) ** 2).sum(-1)
    assert np.array_equal(c.assign(x), d2.argmin(axis=1))


@pytest.mark.parametrize("scores_bytes", [1, 4 * 32 * 7])
def test_assignment_block_by_block_is_the_whole_assignment(
    vectors: np.ndarray, scores_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = train_clustering(vectors, 32, Algorithm.KMEANS, Metric.L2, seed=1)
    whole = c.assign(vectors)
    monkeypatch.setattr(clustering, "ASSIGN_BYTES", scores_bytes)  # a row, or 7, a block
    assert np.array_equal(c.assign(vectors), whole)


def test_spherical_centroids_are_unit_norm_and_assign_by_inner_product(vectors: np.ndarray) -> None:
    c = train_clustering(vectors, 16, Algorithm.SPHERICAL, Metric.IP, seed=1)
    np.testing.assert_allclose(np.linalg.norm(c.representatives, axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(c.assign(vectors), (vectors @ c.representatives.T).argmax(axis=1))


@pytest.mark.parametrize("metric", list(Metric))
def test_shallow_representatives_are_sampled_documents(vectors: np.ndarray, metric: Metric) -> None:
    x = prepare(vectors, metric)
    c = train_clustering(x, 20, Algorithm.SHALLOW, metric, seed=3)
    rows = {tuple(r) for r in x}
    assert all(tuple(r) in rows for r in c.representatives)
    # each sample is its own best representative, so it lands in its own list
    assert np.array_equal(c.assign(c.representatives), np.arange(20))


def test_same_seed_same_clustering(vectors: np.ndarray) -> None:
    a = train_clustering(vectors, 8, Algorithm.KMEANS, Metric.L2, seed=5)
    b = train_clustering(vectors, 8, Algorithm.KMEANS, Metric.L2, seed=5)
    np.testing.assert_array_equal(a.representatives, b.representatives)


@pytest.mark.parametrize(("n", "expected"), [(10, 1), (1000, 25), (60631, 985)])
def test_auto_nlist_is_four_sqrt_n_with_at_least_39_points_per_list(n: int, expected: int) -> None:
    assert auto_nlist(n) == expected


@pytest.mark.parametrize(("n", "expected"), [(10, 1), (1000, 25), (10_000, 100), (60631, 246)])
def test_auto_nlist_scales_with_the_lists_per_root_asked_for(n: int, expected: int) -> None:
    assert auto_nlist(n, lists_per_root=1.0) == expected
