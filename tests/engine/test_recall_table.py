"""Recall tables agree with real IVF search and choose the smallest nprobe keeping a promise."""

import numpy as np
import pytest

from app.engine.clustering import Algorithm, train_clustering
from app.engine.evaluation import recall_at_k
from app.engine.ivf import VectorIndex
from app.engine.labels import exact_neighbours, list_labels
from app.engine.metric import Metric
from app.engine.recall_table import RecallTable, measure
from app.engine.routing import centroid_router
from bench import debian


@pytest.fixture(scope="module")
def setup() -> tuple[VectorIndex, np.ndarray, np.ndarray, RecallTable]:
    data = debian.load("cos", n_docs=3000, n_train=0, n_test=400)
    clustering = train_clustering(data.docs, 40, Algorithm.KMEANS, Metric.COSINE, seed=0)
    index = VectorIndex(data.docs.shape[1], Metric.COSINE, clustering)
    index.upsert(np.arange(len(data.docs)), data.docs)
    nb = exact_neighbours(data.docs, data.test_queries, 10, Metric.COSINE)
    lists = list_labels(nb, clustering.assign(data.docs))
    table = measure(centroid_router(clustering), data.test_queries, lists)
    return index, data.test_queries, nb, table


def test_table_equals_recall_of_real_ivf_search(setup) -> None:
    index, queries, nb, table = setup
    for nprobe in (1, 3, 10, 40):
        found = index.search(queries, 10, nprobe=nprobe).ids
        assert table.recall[nprobe - 1] == pytest.approx(recall_at_k(found, nb, 10), abs=1e-6)


def test_recall_rises_to_one_and_bound_stays_below(setup) -> None:
    *_, table = setup
    assert np.all(np.diff(table.recall) >= 0) and table.recall[-1] == pytest.approx(1.0)
    assert all(lo <= r for lo, r in zip(table.lower, table.recall, strict=True))


def test_nprobe_for_is_the_smallest_keeping_the_bound(setup) -> None:
    *_, table = setup
    p = table.nprobe_for(0.9)
    assert p is not None and table.lower[p - 1] >= 0.9
    assert p == 1 or table.lower[p - 2] < 0.9
    assert table.nprobe_for(1.01) is None
    assert RecallTable.from_dict(table.to_dict()) == table
