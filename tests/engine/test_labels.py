"""Labels are exact: neighbours equal brute force, list labels are the lists of those neighbours."""

import numpy as np
import pytest

from app.engine.clustering import Algorithm, train_clustering
from app.engine.labels import (
    Objective,
    exact_neighbours,
    exact_search,
    graded_weights,
    list_labels,
    target_weights,
)
from app.engine.metric import Metric, prepare


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    docs = rng.standard_normal((700, 12)).astype(np.float32) * rng.uniform(0.5, 2, (700, 1))
    return docs.astype(np.float32), rng.standard_normal((90, 12)).astype(np.float32)


def _brute_force(docs: np.ndarray, queries: np.ndarray, k: int, metric: Metric) -> np.ndarray:
    d, q = prepare(docs, metric), prepare(queries, metric)
    d64, q64 = d.astype(np.float64), q.astype(np.float64)
    if metric is Metric.L2:
        scores = -((q64[:, None, :] - d64[None, :, :]) ** 2).sum(-1)
    else:
        scores = q64 @ d64.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("metric", list(Metric))
def test_exact_neighbours_equal_brute_force_across_blocks(data, metric: Metric) -> None:
    docs, queries = data
    got = exact_neighbours(docs, queries, 10, metric, block=32)
    assert got.shape == (90, 10) and got.dtype == np.int64
    np.testing.assert_array_equal(got, _brute_force(docs, queries, 10, metric))


@pytest.mark.parametrize("metric", list(Metric))
def test_exact_search_of_prepared_vectors_is_that_of_the_raw_ones(data, metric: Metric) -> None:
    docs, queries = data
    ids, scores = exact_search(docs, queries, 10, metric)
    d, q = prepare(docs, metric), prepare(queries, metric)
    got_ids, got_scores = exact_search(d, q, 10, metric, prepared=True)
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_allclose(got_scores, scores, rtol=1e-6)


def test_vectors_said_to_be_prepared_are_compared_as_given(data) -> None:
    docs, queries = data  # not unit-norm: as given, cosine compares their inner products
    as_given = exact_search(docs, queries, 10, Metric.COSINE, prepared=True)
    np.testing.assert_array_equal(as_given[0], exact_neighbours(docs, queries, 10, Metric.IP))


def test_exact_neighbours_pad_when_collection_is_smaller_than_k(data) -> None:
    docs, queries = data
    got = exact_neighbours(docs[:3], queries[:5], 5, Metric.IP)
    assert (got[:, 3:] == -1).all() and (got[:, :3] >= 0).all()


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_topk_labels_are_the_lists_of_the_exact_top_k(data, algorithm: Algorithm) -> None:
    docs, queries = data
    clustering = train_clustering(prepare(docs, Metric.COSINE), 8, algorithm, Metric.COSINE)
    doc_lists = clustering.assign(prepare(docs, Metric.COSINE))
    labels = list_labels(exact_neighbours(docs, queries, 5, Metric.COSINE), doc_lists)
    truth = _brute_force(docs, queries, 5, Metric.COSINE)
    np.testing.assert_array_equal(labels, doc_lists[truth])


def test_target_weights_spread_by_share_of_the_top_k() -> None:
    lists = np.array([[4, 4, 1, 2], [0, 3, -1, -1]])
    top1 = target_weights(lists, Objective.TOP1, 4)
    topk = target_weights(lists, Objective.TOPK, 4)
    mixed = target_weights(lists, Objective.MIXED, 4, top1_weight=0.25)
    np.testing.assert_allclose(top1, [[1, 0, 0, 0], [1, 0, 0, 0]])
    # list 4 holds half of the first query's top-4; padding carries no weight
    np.testing.assert_allclose(topk, [[0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0, 0]])
    np.testing.assert_allclose(mixed, 0.25 * top1 + 0.75 * topk)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("metric", list(Metric))
def test_exact_search_returns_the_neighbours_scores_higher_is_better(data, metric) -> None:
    docs, queries = data
    ids, scores = exact_search(docs, queries, 10, metric, block=32)
    np.testing.assert_array_equal(ids, exact_neighbours(docs, queries, 10, metric))
    d, q = prepare(docs, metric), prepare(queries, metric)
    if metric is Metric.L2:
        expected = -((q[:, None, :] - d[ids]) ** 2).sum(-1)
    else:
        expected = np.einsum("nd,nkd->nk", q, d[ids])
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-3)
    assert (np.diff(scores, axis=1) <= 1e-5).all()


def test_exact_search_pads_scores_with_minus_infinity(data) -> None:
    docs, queries = data
    ids, scores = exact_search(docs[:3], queries[:5], 5, Metric.IP)
    assert (ids[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert np.isfinite(scores[:, :3]).all()


def test_graded_weights_go_from_top1_to_topk_with_the_temperature() -> None:
    # spread s_1 - s_k is 3 for both rows, so the temperature is in units of 3
    scores = np.array([[5.0, 4.0, 3.0, 2.0], [1.0, 1.0, 0.5, -2.0]])
    cold = graded_weights(scores, 1e-3)
    hot = graded_weights(scores, 1e3)
    np.testing.assert_allclose(cold, [[1, 0, 0, 0], [0.5, 0.5, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(hot, 0.25, atol=1e-3)
    mid = graded_weights(scores, 1.0)
    np.testing.assert_allclose(
        mid[0], np.exp([0, -1 / 3, -2 / 3, -1]) / np.exp([0, -1 / 3, -2 / 3, -1]).sum(), rtol=1e-6
    )
    assert mid[1, 0] == mid[1, 1], "exact ties share the target equally"
    np.testing.assert_allclose(mid.sum(axis=1), 1.0, rtol=1e-6)


def test_graded_target_weighs_neighbours_by_score_and_skips_padding() -> None:
    lists = np.array([[4, 4, 1, 2], [0, 3, -1, -1]])
    scores = np.array([[5.0, 4.0, 3.0, 2.0], [2.0, 1.0, -np.inf, -np.inf]])
    graded = target_weights(lists, Objective.GRADED, 4, scores=scores, temperature=0.5)
    np.testing.assert_allclose(graded[0], graded_weights(scores[:1], 0.5)[0], rtol=1e-6)
    assert (graded[1, 2:] == 0).all() and graded[1, 0] > graded[1, 1] > 0
    np.testing.assert_allclose(graded.sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="exact scores"):
        target_weights(lists, Objective.GRADED, 4)
