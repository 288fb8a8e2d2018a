"""Evaluation measures count hits against exact ground truth, never padding."""

import numpy as np
import pytest

from app.engine.evaluation import mean_probes, recall_at_k, routing_accuracy, top1_accuracy


def test_recall_at_k_counts_the_true_top_k_found_in_the_first_k_results() -> None:
    true = np.array([[1, 2, 3, 9], [4, 5, 6, 9]], dtype=np.int64)
    found = np.array([[3, 1, 7], [6, 0, 8]], dtype=np.int64)
    assert recall_at_k(found, true, 3) == pytest.approx((2 + 1) / 6)
    assert recall_at_k(found, true, 1) == pytest.approx(0.0)
    assert recall_at_k(true, true, 4) == 1.0


def test_recall_ignores_padding_and_keeps_k_as_denominator() -> None:
    true = np.array([[-1, 2]], dtype=np.int64)
    found = np.array([[-1, 2]], dtype=np.int64)
    assert recall_at_k(found, true, 2) == pytest.approx(0.5)
    short = np.array([[2]], dtype=np.int64)
    assert recall_at_k(short, np.array([[2, 5]]), 2) == pytest.approx(0.5)


def test_recall_counts_a_repeated_id_once() -> None:
    assert recall_at_k(np.array([[1, 1]]), np.array([[1, 2]]), 2) == pytest.approx(0.5)


def test_recall_rejects_ground_truth_shorter_than_k() -> None:
    with pytest.raises(ValueError):
        recall_at_k(np.array([[1, 2]]), np.array([[1]]), 2)


def test_top1_accuracy_compares_first_columns() -> None:
    found = np.array([[1, 2], [3, 4], [-1, -1]], dtype=np.int64)
    true = np.array([[1, 9], [4, 3], [5, 6]], dtype=np.int64)
    assert top1_accuracy(found, true) == pytest.approx(1 / 3)


def test_routing_accuracy_checks_the_true_list_was_probed() -> None:
    probed = np.array([[0, 3], [2, -1], [-1, -1]], dtype=np.int64)
    assert routing_accuracy(probed, np.array([3, 5, 0])) == pytest.approx(1 / 3)


def test_mean_probes_excludes_padding() -> None:
    probed = np.array([[0, 3, 1], [2, -1, -1]], dtype=np.int64)
    assert mean_probes(probed) == pytest.approx(2.0)


def test_measures_fail_at_the_door_on_wrong_shapes() -> None:
    with pytest.raises(ValueError):
        top1_accuracy(np.array([1, 2]), np.array([[1], [2]]))
    with pytest.raises(ValueError):
        routing_accuracy(np.zeros((2, 2), np.int64), np.zeros(3, np.int64))
