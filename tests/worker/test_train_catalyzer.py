"""Training paper 003's catalyzer: the loss terms, the BatchNorm fold, and that it helps."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from app.engine.catalyzer import Catalyzer, binary_index, sign_codes
from worker.train_catalyzer import (
    MIN_POINTS,
    CatalyzerConfig,
    CatalyzerNet,
    Quantizer,
    exact_neighbours,
    export,
    koleo_loss,
    train_catalyzer,
    triplet_rank_loss,
)

# Small and fast: a narrow net, few epochs, one thread (the machine is shared).
FAST = CatalyzerConfig(hidden=256, epochs=6, batch_size=128, koleo_weight=0.2, threads=1)


def test_koleo_grows_as_points_cluster_together() -> None:
    spread = torch.eye(4)  # 4 orthonormal points: nearest-neighbour distance √2
    values = []
    for t in (0.0, 0.5, 0.9, 0.99):
        clustered = torch.nn.functional.normalize(spread * (1 - t) + t, dim=1)
        values.append(float(koleo_loss(clustered)))
    assert values == sorted(values) and values[-1] > values[0] + 1.0
    assert values[0] == pytest.approx(-math.log(math.sqrt(2)), abs=1e-5)


def test_triplet_rank_loss_is_zero_once_the_positive_is_nearer_by_the_margin() -> None:
    anchor = torch.tensor([[0.0, 0.0]])
    positive = torch.tensor([[1.0, 0.0]])  # squared distance 1
    negative = torch.tensor([[0.0, 2.0]])  # squared distance 4
    assert float(triplet_rank_loss(anchor, positive, negative, margin=0.0)) == 0.0
    assert float(triplet_rank_loss(anchor, positive, negative, margin=3.0)) == 0.0
    assert float(triplet_rank_loss(anchor, positive, negative, margin=3.5)) == pytest.approx(0.5)
    # positive and negative swapped: the loss is the violation, 4 - 1
    assert float(triplet_rank_loss(anchor, negative, positive)) == pytest.approx(3.0)


def test_numpy_forward_equals_torch_eval_forward_with_batchnorm_folded() -> None:
    torch.manual_seed(0)
    net = CatalyzerNet(32, 64, 24)
    for module in net.body:  # non-trivial BatchNorm statistics and affine parameters
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    net.eval()
    x = np.random.default_rng(1).standard_normal((100, 32)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    cat = export(net, {"k": 1})
    assert len(cat.layers) == 3 and cat.params == {"k": 1}
    np.testing.assert_allclose(cat.apply(x), expected, atol=1e-5)
    np.testing.assert_allclose(Catalyzer.from_bytes(cat.to_bytes()).apply(x), expected, atol=1e-5)


def _clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors in 128-d: 40 tight-ish clusters around a strong common direction.

    Sign bits after a random rotation spend most bits on the shared direction; a learned
    map can centre it away and spread the clusters over the sphere.
    """
    rng = np.random.default_rng(seed)
    d = 128
    common = rng.standard_normal(d) * 5.0
    centers = rng.standard_normal((40, d))
    x = common + centers[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _one_recall_at_10(base: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> float:
    found = binary_index(sign_codes(base)).search(sign_codes(queries), 10)[1]
    return float((found == truth[:, :1]).any(axis=1).mean())


def test_training_beats_sign_bits_of_a_random_rotation_on_clustered_data() -> None:
    data = _clustered(3200, seed=11)
    base, queries = data[:3000], data[3000:]
    truth = exact_neighbours(base, queries, 1)
    seen: list[float] = []
    cat = train_catalyzer(base, FAST, seen.append)
    learned = _one_recall_at_10(cat.apply(base), cat.apply(queries), truth)
    rotation = np.linalg.qr(np.random.default_rng(0).standard_normal((128, 128)))[0][:, :64]
    plain = _one_recall_at_10(base @ rotation, queries @ rotation, truth)
    assert learned > plain + 0.1, (learned, plain)
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert cat.d_out == 64 and cat.params["koleo_weight"] == 0.2
    assert len(cat.params["history"]) == FAST.epochs
    stored = Catalyzer.from_bytes(cat.to_bytes())
    assert stored.params["koleo_weight"] == 0.2 and stored.params["config"]["bits"] == 64
    np.testing.assert_allclose(stored.apply(queries), cat.apply(queries), atol=1e-6)


def test_koleo_weight_is_chosen_on_held_out_points_from_the_grid() -> None:
    config = replace(
        FAST,
        koleo_weight=None,
        koleo_grid=(0.0, 0.2),
        selection_epochs=1,
        epochs=1,
        quantizer=Quantizer.LATTICE,
    )
    cat = train_catalyzer(_clustered(1500, seed=12), config)
    selection = cat.params["selection_recall_at_10"]
    assert set(selection) == {"0.0", "0.2"}
    assert all(0.0 <= r <= 1.0 for r in selection.values())
    assert selection[str(cat.params["koleo_weight"])] == max(selection.values())
    assert cat.d_out == 24


def test_too_few_points_or_bits_not_offered_are_refused() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_POINTS}"):
        train_catalyzer(_clustered(MIN_POINTS - 1, seed=13), FAST)
    with pytest.raises(ValueError, match="bits"):
        CatalyzerConfig(bits=32)
    with pytest.raises(ValueError, match="64 bits"):
        CatalyzerConfig(quantizer=Quantizer.LATTICE, bits=128)
