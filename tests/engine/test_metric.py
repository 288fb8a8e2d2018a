"""Vectors as the engine compares them: unit norm for cosine (zero rows stay zero), and the
one-call products of queries with chosen rows that re-ranking and centre terms use."""

import numpy as np
import pytest

from app.engine.metric import Metric, normalize, prepare, prepare_in_place, products_by_row


def test_normalize_makes_rows_unit_and_keeps_zero_rows() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]])
    out = normalize(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]], atol=1e-7)
    assert x[0, 0] == 3.0  # the input is left as it was


@pytest.mark.parametrize("l2", [False, True])
def test_products_by_row_equal_numpy_and_mark_missing_rows(l2: bool) -> None:
    rng = np.random.default_rng(5)
    q = rng.standard_normal((3, 8)).astype(np.float32)
    y = rng.standard_normal((10, 8)).astype(np.float32)
    rows = np.array([[4, 0, -1], [9, 9, 2], [-1, -1, -1]], np.int64)
    got = products_by_row(q, y, rows, l2=l2)
    gathered = y[np.maximum(rows, 0)]
    diff = gathered - q[:, None, :]
    want = (diff**2).sum(-1) if l2 else np.einsum("ncd,nd->nc", gathered, q)
    held = rows >= 0
    np.testing.assert_allclose(got[held], want[held], rtol=1e-5, atol=1e-5)
    assert (got[~held] == (np.inf if l2 else -np.inf)).all()


@pytest.mark.parametrize("metric", list(Metric))
def test_prepare_in_place_is_prepare_without_a_copy(metric: Metric) -> None:
    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    expected = prepare(x, metric)
    got = prepare_in_place(x, metric)
    assert got is x and np.array_equal(got, expected)
