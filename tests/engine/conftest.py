"""Shared engine fixtures: seeded random vectors, a slice of the Debian data, an oracle."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.metric import Metric, prepare, to_scores
from bench import debian


@pytest.fixture(scope="session")
def random_vectors() -> np.ndarray:
    """2,000 seeded 32-d Gaussian vectors with varied norms (so ip differs from cosine)."""
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((2000, 32)).astype(np.float32)
    return x * rng.uniform(0.5, 2.0, size=(2000, 1)).astype(np.float32)


@pytest.fixture(scope="session")
def random_queries() -> np.ndarray:
    return np.random.default_rng(99).standard_normal((50, 32)).astype(np.float32)


@pytest.fixture(scope="session")
def debian_cos() -> debian.Dataset:
    """3,000 documents of the shared data (cosine), with exact ground truth over the slice."""
    return debian.load("cos", n_docs=3000, n_train=500, n_test=200)


def brute_force(
    docs: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int, metric: Metric
) -> tuple[np.ndarray, np.ndarray]:
    """The oracle: (scores, ids) of the exact top-k by numpy, higher score is better."""
    x = prepare(docs, metric)
    q = prepare(queries, metric)
    if metric is Metric.L2:
        scores = to_scores(((q[:, None, :] - x[None, :, :]) ** 2).sum(-1), metric)
    else:
        scores = q @ x.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


def true_scores(
    docs: np.ndarray, ids: np.ndarray, queries: np.ndarray, found: np.ndarray, metric: Metric
) -> np.ndarray:
    """The exact score of each found id, to check reported scores without tie ambiguity."""
    row = {int(i): r for r, i in enumerate(ids)}
    x = prepare(docs, metric)
    q = prepare(queries, metric)
    out = np.empty(found.shape, dtype=np.float32)
    for a in range(found.shape[0]):
        v = x[[row[int(i)] for i in found[a]]]
        if metric is Metric.L2:
            out[a] = -((v - q[a]) ** 2).sum(-1)
        else:
            out[a] = v @ q[a]
    return out
