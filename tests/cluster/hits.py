"""Comparing a sharded search's hits with the single-process engine's."""

from __future__ import annotations

import numpy as np


def assert_same_hits(
    scores: np.ndarray,
    ids: np.ndarray,
    expected_scores: np.ndarray,
    expected_ids: np.ndarray,
    docs: np.ndarray,
) -> None:
    """Equal scores, equal ids; where scores tie (the data holds duplicate documents) the
    order, or at the k-th place the choice, is free, so there equal vectors suffice.

    ``docs``: the document vectors indexed by id."""
    np.testing.assert_array_equal(scores, expected_scores)
    differ = ids != expected_ids
    for row, col in zip(*np.nonzero(differ), strict=True):
        tied = np.count_nonzero(scores[row] == scores[row, col]) > 1 or col == ids.shape[1] - 1
        assert tied, f"query {row}: id {ids[row, col]} where {expected_ids[row, col]} was expected"
        np.testing.assert_array_equal(docs[ids[row, col]], docs[expected_ids[row, col]])
    assert all(len(set(r[r >= 0])) == np.count_nonzero(r >= 0) for r in ids)
