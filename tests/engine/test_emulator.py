"""Paper 002's emulator on a small clustered synthetic set: each level above a stated
threshold on held-out queries, both architectures, and storage round trips."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.clustering import Algorithm, train_clustering
from app.engine.emulator import Architecture, Emulator
from app.engine.emulator_training import EmulatorConfig, EmulatorData, train_emulator
from app.engine.labels import exact_neighbours
from app.engine.metric import Metric, prepare

NLIST = 8


def clustered(
    seed: int, n_docs: int = 800, n_queries: int = 1200, dim: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Docs and queries around 8 well separated centres (queries: docs' neighbourhoods)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((NLIST, dim)).astype(np.float32) * 4
    docs = centres[rng.integers(NLIST, size=n_docs)] + rng.standard_normal((n_docs, dim))
    near = docs[rng.integers(n_docs, size=n_queries)]
    queries = near + 0.3 * rng.standard_normal((n_queries, dim))
    return docs.astype(np.float32), queries.astype(np.float32)


def trained(
    metric: Metric, config: EmulatorConfig
) -> tuple[Emulator, np.ndarray, np.ndarray, np.ndarray]:
    """(emulator, held-out queries, their exact top-5 doc ids, the docs' lists)."""
    docs, queries = clustered(7)
    x, q = prepare(docs, metric), prepare(queries, metric)
    clustering = train_clustering(x, NLIST, Algorithm.KMEANS, metric, seed=0)
    lists = clustering.assign(x)
    top5 = exact_neighbours(x, q, 5, metric)
    ids = np.arange(1000, 1000 + len(x), dtype=np.int64)  # proposals are ids, not rows
    train, test = np.arange(900), np.arange(900, len(q))
    data = EmulatorData(x, ids, lists, q[train], top5[train])
    emulator = train_emulator(data, clustering, config)
    return emulator, q[test], ids[top5[test]], lists


@pytest.mark.parametrize("metric", [Metric.IP, Metric.L2])
def test_linear_levels_beat_thresholds(metric: Metric) -> None:
    emulator, q, top5_ids, lists = trained(metric, EmulatorConfig())
    true_list = lists[top5_ids[:, 0] - 1000]
    # Level 1: the list of the true nearest neighbour, top-1, >= 0.88 (measured ip 0.91,
    # l2 0.97: under ip the nearest neighbour is often not in the query's k-means list).
    level1 = emulator.level1.route(q, 1)[:, 0]
    assert np.mean(level1 == true_list) >= 0.88
    # Level 2 (given the true list): the true neighbour among its top 5, >= 0.95 (it starts
    # from the exact scorer, so training must not have unlearned it).
    hits = [
        top5_ids[i, 0] in emulator.level2.top(q[i : i + 1], int(true_list[i]), 5)[0]
        for i in range(len(q))
    ]
    assert np.mean(hits) >= 0.95


def test_paper_architecture_levels_learn() -> None:
    config = EmulatorConfig(
        level1=Architecture.PAPER, level2=Architecture.PAPER, paper_epochs=10, max_positions=8
    )
    emulator, q, top5_ids, lists = trained(Metric.IP, config)
    true_list = lists[top5_ids[:, 0] - 1000]
    assert emulator.level1.conv is not None and emulator.level2.conv is not None
    # The paper's network on 8 separated clusters: level 1 >= 0.88 (measured 0.94).
    assert np.mean(emulator.level1.route(q, 1)[:, 0] == true_list) >= 0.88
    # Level 2, ~1 training query per member: top-5 >= 0.8 (measured 0.92; chance 5/100).
    hits = [
        top5_ids[i, 0] in emulator.level2.top(q[i : i + 1], int(true_list[i]), 5)[0]
        for i in range(len(q))
    ]
    assert np.mean(hits) >= 0.8


def test_storage_round_trip_keeps_predictions() -> None:
    emulator, q, _, _ = trained(
        Metric.IP, EmulatorConfig(level1=Architecture.PAPER, paper_epochs=2, level2_epochs=1)
    )
    again = Emulator.from_arrays(
        emulator.to_arrays(), emulator.params, clustering_version=0, trained_seq=0, version=1
    )
    first, scored = emulator.propose(q, 2, 5)
    second, scored_again = again.propose(q, 2, 5)
    assert scored == scored_again > 0
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
