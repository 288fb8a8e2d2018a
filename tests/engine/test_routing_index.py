"""The routing-only index: each point's list under a clustering, no vectors."""

from __future__ import annotations

import io

import numpy as np
import pytest

from app.engine.clustering import Algorithm, train_clustering
from app.engine.ivf import VectorIndex
from app.engine.metric import Metric
from app.engine.routing_index import (
    NOT_HELD,
    RoutingIndex,
    load_routing_snapshot,
    save_routing_snapshot,
)

DIM = 8


def _setup(n: int = 2000) -> tuple[np.ndarray, RoutingIndex, VectorIndex]:
    x = np.random.default_rng(0).normal(size=(n, DIM)).astype(np.float32)
    clustering = train_clustering(x, 16, Algorithm.KMEANS, Metric.L2, seed=0)
    return x, RoutingIndex(DIM, Metric.L2, clustering), VectorIndex(DIM, Metric.L2, clustering)


def test_it_holds_the_lists_a_vector_index_holds_without_the_vectors() -> None:
    x, routing, whole = _setup(20_000)
    ids = np.arange(100, 100 + len(x), dtype=np.int64)
    for part in np.array_split(np.arange(len(x)), 4):  # in batches, as writes come
        routing.upsert(ids[part], x[part])
        whole.upsert(ids[part], x[part])
    moved = x[:50][::-1].copy()  # rewritten with other vectors: other lists
    routing.upsert(ids[:50], moved, whole.lists_of(moved))
    whole.upsert(ids[:50], moved)
    assert routing.remove(ids[-30:]) == whole.remove(ids[-30:]) == 30
    assert routing.remove(ids[-30:]) == 0
    assert routing.count == whole.count == len(x) - 30
    np.testing.assert_array_equal(routing.list_sizes(), whole.list_sizes())
    expected = np.full(len(ids), NOT_HELD, np.int64)
    expected[: len(x) - 30] = whole.lists_of(np.concatenate([moved, x[50:-30]]))[1]
    np.testing.assert_array_equal(routing.lists_held(ids), expected)
    # 4 bytes of list number per id of the pages the ids fill, against a float vector and
    # more.
    assert routing.bytes_per_vector() < 4.5 < DIM * 4 < whole.bytes_per_vector()


def test_ids_below_and_above_the_range_grow_it_and_the_last_repeat_wins() -> None:
    _, routing, _ = _setup(200)
    routing.place(np.array([500, 501]), np.array([1, 2]))
    routing.place(np.array([3, 900, 3]), np.array([4, 5, 6]))
    np.testing.assert_array_equal(
        routing.lists_held(np.array([3, 500, 501, 900, 7, 10_000])), [6, 1, 2, 5, -1, -1]
    )
    assert routing.count == 4 and routing.list_sizes().sum() == 4
    with pytest.raises(ValueError):
        routing.place(np.array([1]), np.array([16]))  # no list 16 of 16


def test_no_ids_are_nothing_to_remove_place_or_look_up() -> None:
    """A change feed with writes and no removal hands ``remove`` no ids (a restart from a
    routing-only snapshot replays such feeds)."""
    x, routing, _ = _setup(200)
    routing.upsert(np.arange(len(x)), x)
    none = np.empty(0, np.int64)

    assert routing.remove(none) == 0
    routing.place(none, none)
    assert routing.lists_held(none).shape == (0,)
    assert routing.count == len(x)


def test_a_snapshot_gives_back_the_same_lists_and_a_damaged_one_is_refused() -> None:
    x, routing, _ = _setup()
    routing.upsert(np.arange(len(x)) * 3, x)  # a sparse id range
    routing.remove(np.arange(0, 300, 3))
    out = io.BytesIO()
    save_routing_snapshot(routing, out, {"seq": 7})
    loaded, meta = load_routing_snapshot(io.BytesIO(out.getvalue()), routing.clustering)
    assert meta == {"seq": 7} and loaded.count == routing.count == len(x) - 100
    np.testing.assert_array_equal(loaded.held()[0], routing.held()[0])
    np.testing.assert_array_equal(loaded.held()[1], routing.held()[1])
    np.testing.assert_array_equal(loaded.list_sizes(), routing.list_sizes())
    damaged = bytearray(out.getvalue())
    damaged[len(damaged) // 2] ^= 0xFF
    with pytest.raises(ValueError):
        load_routing_snapshot(io.BytesIO(bytes(damaged)), routing.clustering)


def test_a_snapshot_of_another_clustering_is_refused() -> None:
    """Its list numbers name another clustering's lists."""
    x, routing, _ = _setup()
    routing.upsert(np.arange(len(x)), x)
    out = io.BytesIO()
    save_routing_snapshot(routing, out, {"seq": 1})
    newer = train_clustering(x, 8, Algorithm.KMEANS, Metric.L2, seed=1, version=2)
    with pytest.raises(ValueError, match="clustering 0, not 2"):
        load_routing_snapshot(io.BytesIO(out.getvalue()), newer)
