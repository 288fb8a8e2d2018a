"""Recall tables agree with real IVF search and choose the smallest nprobe keeping a promise."""

import numpy as np
import pytest

from app.engine.clustering import Algorithm, train_clustering
from app.engine.codes import CodeKind, Quantization
from app.engine.evaluation import recall_at_k
from app.engine.ivf import VectorIndex
from app.engine.labels import exact_neighbours, list_labels
from app.engine.metric import Metric
from app.engine.recall_table import (
    CODED_SCORES,
    RecallTable,
    code_stamp,
    coded_index,
    coded_reach,
    kept_by_nprobe,
    kept_neighbours,
    measure,
    measured_nprobes,
)
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


@pytest.fixture(scope="module")
def coded() -> tuple[VectorIndex, np.ndarray, np.ndarray, np.ndarray]:
    """8 product codes per 384-d vector: far fewer neighbours survive than their lists hold."""
    data = debian.load("cos", n_docs=3000, n_train=0, n_test=400)
    clustering = train_clustering(data.docs, 40, Algorithm.KMEANS, Metric.COSINE, seed=0)
    index = coded_index(Quantization(CodeKind.PQ, m=8), clustering, data.docs)
    nb = exact_neighbours(data.docs, data.test_queries, 10, Metric.COSINE)
    lists = list_labels(nb, clustering.assign(data.docs))
    return index, data.test_queries, nb, lists


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


def test_a_table_of_code_lists_is_their_search_where_measured_and_below_it_between(
    coded,
) -> None:
    index, queries, nb, lists = coded
    assert index.coded
    router = centroid_router(index.clustering)
    measured = measured_nprobes(router.nlist)
    assert measured == [1, 2, 4, 8, 16, 32, 40]
    kept = kept_by_nprobe(index, router, queries, nb)
    assert [p for p, _ in kept] == measured  # 3,000 points: every list within reach
    codes = code_stamp(index.quantization, None)
    table = measure(router, queries, lists, kept=kept, codes=codes)
    assert table.codes == {"kind": "pq", "m": 8}
    for nprobe in range(1, router.nlist + 1):
        found = index.search(queries, 10, lists=router.route(queries, nprobe)).ids
        real = recall_at_k(found, nb, 10)
        if nprobe in measured:
            assert table.recall[nprobe - 1] == pytest.approx(real, abs=1e-6)
        else:
            assert table.recall[nprobe - 1] <= real + 1e-6
    assert table.recall[-1] < 0.9  # the codes lose what no probing finds
    assert table.nprobe_for(table.lower[-1] + 0.01) is None  # then: exact search


def test_a_table_measured_part_way_promises_nothing_beyond(coded) -> None:
    index, queries, nb, lists = coded
    router = centroid_router(index.clustering)
    kept = [(p, kept_neighbours(index, router, queries, nb, p)) for p in measured_nprobes(40, 8)]
    table = measure(router, queries, lists, kept=kept)
    assert table.recall[8:] == [table.recall[7]] * 32
    assert table.nprobe_for(table.lower[7]) <= 8
    assert table.nprobe_for(table.lower[7] + 1e-6) is None
    # The reach: CODED_SCORES codes scored per pass, at least one list, at most all.
    assert coded_reach(40, 3000, 400) == 40
    assert coded_reach(100, 10**7, 1000) == CODED_SCORES // (10**7 * 1000 // 100)
    assert coded_reach(100, 10**9, 1000) == 1
