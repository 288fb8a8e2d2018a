"""Exact vectors beside code lists: ids map to rows (-1 when not held, whatever the id), and
re-scores are exact for every storage, -inf for padding and ids not held."""

from pathlib import Path

import numpy as np
import pytest

from app.engine.exact import ExactStorage, ExactVectors
from app.engine.metric import Metric


@pytest.fixture
def held() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    ids = np.array([5, 17, 3, 40, 22], np.int64)
    return ids, rng.standard_normal((5, 12)).astype(np.float32)


def test_rows_of_misses_padding_absent_and_out_of_range_ids(
    held: tuple[np.ndarray, np.ndarray],
) -> None:
    ids, x = held
    exact = ExactVectors(12, ExactStorage.FLOAT32)
    exact.put(ids, x)
    exact.remove(np.array([17]))
    rows = exact.rows_of(np.array([[3, -1, 17, 41, 0, 40]], np.int64))
    assert rows.shape == (1, 6)
    assert (rows[0, [1, 2, 3, 4]] == -1).all()
    assert np.array_equal(exact.take(rows[0, [0, 5]]), x[[2, 3]])


def test_rows_of_answers_alike_while_ids_turn_dense_sparse_and_dense_again() -> None:
    """Dense ids are looked up in a table by id, sparse ones by binary search: the same
    rows either way, through writes, removals and the switches between the two."""
    rng = np.random.default_rng(3)
    exact = ExactVectors(4, ExactStorage.FLOAT32)
    held: dict[int, np.ndarray] = {}
    start = 10_000  # a collection's ids start where the store's sequence was
    batches = [
        np.arange(start + 50, start + 100),
        np.arange(start, start + 50),  # below the table's first id
        np.array([start + 5000]),
        np.arange(start + 100, start + 3000),
    ]
    for step, ids in enumerate(batches):
        ids = rng.permutation(ids).astype(np.int64)
        x = rng.standard_normal((len(ids), 4)).astype(np.float32)
        exact.put(ids, x)
        held.update(zip(ids.tolist(), x, strict=True))
        gone = rng.choice(list(held), 7, replace=False).astype(np.int64)
        exact.remove(gone)
        for i in gone.tolist():
            del held[i]
        dense = step != 2  # 5,000 apart among ~90 ids is sparse; 3,000 ids make it dense again
        assert (exact._table is not None) == dense
        asked = np.array([*held, *gone.tolist(), -1, 7, start + 7000, start + 5001], np.int64)
        rows = exact.rows_of(asked[None, :])[0]
        assert (rows[len(held) :] == -1).all()
        np.testing.assert_array_equal(exact.take(rows[: len(held)]), np.array(list(held.values())))


@pytest.mark.parametrize("storage", list(ExactStorage))
@pytest.mark.parametrize("metric", [Metric.IP, Metric.L2])
def test_scores_are_exact_and_minus_inf_where_not_held(
    held: tuple[np.ndarray, np.ndarray], storage: ExactStorage, metric: Metric, tmp_path: Path
) -> None:
    ids, x = held
    exact = ExactVectors(12, storage, tmp_path)
    exact.put(ids, x)
    q = np.random.default_rng(8).standard_normal((2, 12)).astype(np.float32)
    candidates = np.array([[40, 5, -1], [99, 22, 3]], np.int64)
    got = exact.score(q, candidates, metric)
    stored = x.astype(np.float16).astype(np.float32) if storage is ExactStorage.FLOAT16 else x
    by_id = dict(zip(ids.tolist(), stored, strict=True))
    for i, j in [(0, 0), (0, 1), (1, 1), (1, 2)]:
        v = by_id[int(candidates[i, j])]
        want = -((v - q[i]) ** 2).sum() if metric is Metric.L2 else v @ q[i]
        assert got[i, j] == pytest.approx(want, rel=1e-5, abs=1e-5)
    assert got[0, 2] == -np.inf and got[1, 0] == -np.inf


@pytest.mark.parametrize("storage", [ExactStorage.FLOAT32, ExactStorage.MMAP])
def test_reserved_rows_are_taken_without_growing_the_store(
    storage: ExactStorage, tmp_path: Path
) -> None:
    store = ExactVectors(4, storage, tmp_path)
    store.reserve(1000)
    held = store._data
    for start in range(0, 1000, 100):
        ids = np.arange(start, start + 100, dtype=np.int64)
        store.put(ids, np.ones((100, 4), np.float32))
    assert store._data is held and len(held) == 1000
    store.put(np.array([1000]), np.ones((1, 4), np.float32))  # one more: it grows
    assert store._data is not held
