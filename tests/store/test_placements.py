"""Placements are stored by epoch and switched atomically, noticed through the write seq."""

from __future__ import annotations

import numpy as np
import pytest

from app.cluster.placement import contiguous_placement, random_placement
from app.store.collections import create_collection, get_collection
from app.store.db import Store
from app.store.placements import (
    UnknownPlacement,
    activate_placement,
    active_placement,
    load_placement,
    request_shards,
    requested_shards,
    save_placement,
)
from app.store.seq import current_seq


def test_a_saved_placement_serves_only_once_activated(store: Store) -> None:
    record = create_collection(store, name="c", dim=2, metric="ip", nlist=None, algorithm="kmeans")
    assert record is not None
    first = contiguous_placement(12, 3)
    epoch = save_placement(store, record.id, 1, first, replicas=2)
    with store.read() as session:
        assert active_placement(session, record.id) is None
        loaded, replicas = load_placement(session, record.id, epoch)
    assert replicas == 2 and loaded.epoch == epoch and loaded.method == "contiguous"
    np.testing.assert_array_equal(loaded.shard_of, first.shard_of)

    seq = activate_placement(store, record.id, epoch)
    second = random_placement(12, 4, seed=1)
    next_epoch = save_placement(store, record.id, 2, second, replicas=1)
    assert next_epoch == epoch + 1
    with store.read() as session:
        serving = active_placement(session, record.id)
        again = get_collection(session, "c")
    assert serving is not None and serving[0].epoch == epoch and serving[2] == 1
    assert again is not None and again.seq == seq  # API processes notice the switch

    activate_placement(store, record.id, next_epoch)
    with store.read() as session:
        serving = active_placement(session, record.id)
        assert current_seq(session) > seq
    assert serving is not None
    placement, replicas, clustering_version = serving
    assert (placement.epoch, placement.shards, replicas, clustering_version) == (
        next_epoch,
        4,
        1,
        2,
    )
    np.testing.assert_array_equal(placement.shard_of, second.shard_of)


def test_unknown_epochs_and_bad_replicas_are_refused(store: Store) -> None:
    record = create_collection(store, name="c", dim=2, metric="ip", nlist=None, algorithm="kmeans")
    assert record is not None
    with pytest.raises(UnknownPlacement):
        activate_placement(store, record.id, 7)
    with store.read() as session, pytest.raises(UnknownPlacement):
        load_placement(session, record.id, 7)
    with pytest.raises(ValueError, match="replicas"):
        save_placement(store, record.id, 1, contiguous_placement(4, 2), replicas=0)


def test_a_sharded_collection_is_requested_before_it_has_lists_to_place(store: Store) -> None:
    record = create_collection(store, name="s", dim=2, metric="ip", nlist=None, algorithm="kmeans")
    other = create_collection(store, name="o", dim=2, metric="ip", nlist=None, algorithm="kmeans")
    assert record is not None and other is not None
    request_shards(store, record.id, shards=3, replicas=2)
    with pytest.raises(ValueError):
        request_shards(store, other.id, shards=0, replicas=1)
    epoch = save_placement(store, record.id, 1, contiguous_placement(12, 3), replicas=2)
    with store.read() as session:
        assert requested_shards(session) == {record.id: (3, 2)}
        assert active_placement(session, record.id) is None  # the request never serves
    assert epoch == 1  # placements count from 1 after the request (epoch 0)
