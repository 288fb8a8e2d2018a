"""Co-probe placement: queries touch fewer shards than under list-order or random placement,
and every shard stays within the balance bounds (points and probe load)."""

from __future__ import annotations

import numpy as np
import pytest

from app.cluster.placement import (
    contiguous_placement,
    coprobe_placement,
    probe_load,
    random_placement,
)

NLIST = 64
SHARDS = 4


def grouped_probes(seed: int, n: int = 2000, width: int = 4) -> np.ndarray:
    """Queries probing lists of one hidden group of 16 (groups interleaved in list order, so
    list order says nothing), with one probe in ten going anywhere."""
    groups = np.random.default_rng(0).permutation(NLIST).reshape(SHARDS, -1)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        own = groups[rng.integers(SHARDS)]
        lists = rng.choice(own, width, replace=False)
        stray = rng.random(width) < 0.1
        lists[stray] = rng.integers(NLIST, size=int(stray.sum()))
        rows.append(np.unique(lists).tolist() + [-1] * (width - len(np.unique(lists))))
    return np.array(rows, np.int64)


@pytest.fixture(scope="module")
def sizes() -> np.ndarray:
    return np.random.default_rng(7).integers(50, 150, NLIST)


def test_coprobe_placement_touches_fewer_shards_than_the_baselines(sizes) -> None:
    logged, unseen = grouped_probes(1), grouped_probes(2)
    placed = coprobe_placement(logged, sizes, SHARDS, imbalance=0.1)
    coprobe = placed.touched(unseen).mean()
    contiguous = contiguous_placement(NLIST, SHARDS).touched(unseen).mean()
    scattered = random_placement(NLIST, SHARDS, seed=3).touched(unseen).mean()
    assert coprobe < 1.5, "the hidden groups are found (strays aside)"
    assert coprobe < 0.7 * min(contiguous, scattered)


@pytest.mark.parametrize("imbalance", [0.05, 0.2])
def test_coprobe_placement_balances_points_and_probe_load(sizes, imbalance: float) -> None:
    logged = grouped_probes(1)
    placed = coprobe_placement(logged, sizes, SHARDS, imbalance=imbalance)
    load = probe_load(logged, sizes)
    for weights in (sizes, load):
        per_shard = np.bincount(placed.shard_of, weights=weights, minlength=SHARDS)
        assert per_shard.max() <= (1 + imbalance) * weights.sum() / SHARDS + 1e-6
    assert placed.method == "coprobe" and placed.nlist == NLIST


def test_placements_are_deterministic_and_cover_every_list(sizes) -> None:
    logged = grouped_probes(1)
    a = coprobe_placement(logged, sizes, SHARDS, seed=5)
    b = coprobe_placement(logged, sizes, SHARDS, seed=5)
    np.testing.assert_array_equal(a.shard_of, b.shard_of)
    for placement in (a, contiguous_placement(NLIST, SHARDS), random_placement(NLIST, SHARDS)):
        lists = np.concatenate([placement.lists_of(s) for s in range(SHARDS)])
        np.testing.assert_array_equal(np.sort(lists), np.arange(NLIST))


def test_one_shard_and_too_many_shards() -> None:
    one = coprobe_placement(np.array([[0, 1]]), np.ones(3, np.int64), 1)
    assert (one.shard_of == 0).all()
    with pytest.raises(ValueError, match="at least as many lists"):
        contiguous_placement(3, 4)
