"""Training paper 003's catalyzer (torch): the only catalyzer code that imports torch.

The network is d → 1024 → 1024 → d_out (Linear + BatchNorm + ReLU twice, then Linear),
output L2-normalised. The loss is the paper's:

- **triplet rank loss** ``max(0, |f(a) - f(p)|² - |f(a) - f(n)|² + margin)``: the positive
  ``p`` is drawn among the exact 10 nearest neighbours of the anchor in *input* space, the
  negative ``n`` is its 50th nearest neighbour in the *current output* space, re-mined at
  the start of every epoch (so the net is told to keep true neighbours closer than the
  points it currently confuses them with);
- **λ · KoLeo**, the Kozachenko-Leonenko differential entropy estimator up to constants:
  ``-mean_i log(min_{j≠i} |f(x_i) - f(x_j)|)`` over the batch; it grows as points crowd
  together, so minimising it spreads them uniformly over the sphere, which is what a fixed
  quantizer (sign bits, a spherical lattice) needs to use all its cells.

λ is chosen on held-out points: a short run per candidate on a sample, scored by the
1-recall@10 that the *quantized* codes give the held-out points' exact nearest neighbour.
For the lattice, the paper reports that training through the quantizer makes almost no
difference and gives a catalyzer that serves any quantizer, so we train on the continuous
output and quantize after training; the quantizer enters only the choice of λ (and of
d_out: 24 for the lattice, the number of bits for signs).

Inputs are the vectors as the engine compares them (unit-norm for cosine); neighbours in
input space are by L2, which is the cosine order for unit vectors. Export folds BatchNorm
into the linear layers, giving the numpy ``app.engine.catalyzer.Catalyzer`` serving uses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum

import faiss
import numpy as np
import torch

from app.engine.catalyzer import (
    LATTICE_DIM,
    SIGN_BITS,
    Catalyzer,
    LatticeCodec,
    binary_index,
    lattice_index,
    sign_codes,
)
from app.engine.metric import as_matrix

Progress = Callable[[float], None]


class Quantizer(StrEnum):
    SIGN = "sign"
    LATTICE = "lattice"


# Below this many vectors the held-out split (10%) has too few queries to choose λ and the
# 50th output neighbour is a large share of the set; callers refuse training with this.
MIN_POINTS = 1000


@dataclass(frozen=True)
class CatalyzerConfig:
    """Hyperparameters; stored verbatim in ``Catalyzer.params`` (hyperparameters are data).

    The defaults train on ≤ 20,000 vectors in a few minutes on 2 CPU cores (the paper trains
    on far more, far longer; ``bench/catalyzer.py`` measures what this budget gives).
    """

    quantizer: Quantizer = Quantizer.SIGN
    bits: int = 64  # sign: d_out = bits; lattice: always 64 bits (d_out 24, r² 79)
    hidden: int = 1024
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.1  # SGD with momentum, cosine-annealed to zero over the run
    momentum: float = 0.9
    k_pos: int = 10  # positives: among the exact k_pos nearest neighbours in input space
    rank_neg: int = 50  # negative: the rank_neg-th nearest neighbour in output space
    margin: float = 0.0  # the paper's rank loss has none
    koleo_weight: float | None = None  # λ; None: chosen on held-out data from koleo_grid
    koleo_grid: tuple[float, ...] = (0.03, 0.1, 0.3)
    selection_epochs: int = 3  # epochs of each λ candidate's short run
    selection_points: int = 5_000  # the short runs train on a sample this large
    holdout_fraction: float = 0.1
    max_points: int = 20_000  # a larger collection trains on a seeded sample
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None keeps torch's setting

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantizer", Quantizer(self.quantizer))
        if self.quantizer is Quantizer.SIGN and self.bits not in SIGN_BITS:
            raise ValueError(f"sign codes come in {SIGN_BITS} bits, not {self.bits}")
        if self.quantizer is Quantizer.LATTICE and self.bits != 64:
            raise ValueError("the lattice code is 64 bits")
        if min(self.epochs, self.batch_size, self.k_pos, self.rank_neg) < 1:
            raise ValueError("epochs, batch_size, k_pos and rank_neg must be positive")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError("holdout_fraction must be in (0, 1)")
        if self.koleo_weight is None and not self.koleo_grid:
            raise ValueError("without koleo_weight, koleo_grid must offer candidates")

    @property
    def d_out(self) -> int:
        return LATTICE_DIM if self.quantizer is Quantizer.LATTICE else self.bits


def koleo_loss(y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo: minus the mean log distance of each row to its nearest other row."""
    d2 = torch.cdist(y, y).pow(2)
    d2 = d2 + torch.diag(torch.full((len(y),), math.inf, dtype=y.dtype))
    return -0.5 * torch.log(d2.min(dim=1).values + eps).mean()


def triplet_rank_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.0
) -> torch.Tensor:
    """Mean hinge on squared distances: zero once the positive is nearer by the margin."""
    d_pos = (anchor - positive).pow(2).sum(dim=1)
    d_neg = (anchor - negative).pow(2).sum(dim=1)
    return torch.relu(d_pos - d_neg + margin).mean()


class CatalyzerNet(torch.nn.Module):
    """The MLP of the paper; ``forward`` returns unit vectors."""

    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(d_in, hidden),
            torch.nn.BatchNorm1d(hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.BatchNorm1d(hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, d_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.body(x), dim=1)

    def embed(self, x: np.ndarray, batch: int = 8192) -> np.ndarray:
        """Eval-mode outputs as numpy (for mining and held-out scoring)."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            out = np.concatenate(
                [self(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]
            )
        self.train(was_training)
        return out


def export(net: CatalyzerNet, params: dict[str, object]) -> Catalyzer:
    """Fold each eval-mode BatchNorm into the Linear before it: W' = W·s, b' = (b - μ)·s + β."""
    mods = list(net.body)
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    i = 0
    with torch.no_grad():
        while i < len(mods):
            lin = mods[i]
            assert isinstance(lin, torch.nn.Linear)
            w = lin.weight.double().T.clone()  # (in, out)
            b = lin.bias.double().clone()
            if i + 1 < len(mods) and isinstance(mods[i + 1], torch.nn.BatchNorm1d):
                bn = mods[i + 1]
                assert isinstance(bn, torch.nn.BatchNorm1d)
                assert bn.running_mean is not None and bn.running_var is not None
                s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                w = w * s
                b = (b - bn.running_mean.double()) * s + bn.bias.double()
                i += 3  # Linear, BatchNorm, ReLU
            else:
                i += 1
            layers.append((w.float().numpy().copy(), b.float().numpy().copy()))
    return Catalyzer(tuple(layers), dict(params))


def exact_neighbours(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(n_q, k) row indices of the exact L2 nearest neighbours in ``base``."""
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(base)
    return index.search(queries, k)[1]


def code_recall(
    net_out_base: np.ndarray,
    net_out_queries: np.ndarray,
    truth: np.ndarray,
    quantizer: Quantizer,
    r: int = 10,
) -> float:
    """1-recall@r: how often the exact nearest neighbour is in the top r by the codes."""
    if quantizer is Quantizer.SIGN:
        found = binary_index(sign_codes(net_out_base)).search(sign_codes(net_out_queries), r)[1]
    else:
        codec = LatticeCodec()
        index = lattice_index(codec.decode(codec.encode(net_out_base)))
        found = index.search(net_out_queries, r)[1]
    return float((found == truth[:, :1]).any(axis=1).mean())


class _Trainer:
    """One training run at a fixed λ over a base set and its input-space neighbours."""

    def __init__(
        self,
        base: np.ndarray,
        positives: np.ndarray,
        config: CatalyzerConfig,
        koleo_weight: float,
        epochs: int,
    ) -> None:
        self.base, self.positives, self.config = base, positives, config
        self.koleo_weight, self.epochs = koleo_weight, epochs
        self.rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        self.net = CatalyzerNet(base.shape[1], config.hidden, config.d_out)
        self.steps_per_epoch = max(1, len(base) // config.batch_size)
        self.optimizer = torch.optim.SGD(
            self.net.parameters(), lr=config.lr, momentum=config.momentum
        )
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=self.steps_per_epoch * epochs
        )
        self.history: list[dict[str, float]] = []

    def run(self, progress: Progress) -> CatalyzerNet:
        x = torch.from_numpy(self.base)
        for epoch in range(self.epochs):
            negatives = self._mine_negatives()
            order = self.rng.permutation(len(self.base))
            pick = self.rng.integers(0, self.positives.shape[1], size=len(self.base))
            pos_of = self.positives[np.arange(len(self.base)), pick]
            sums = np.zeros(2)
            self.net.train()
            for step in range(self.steps_per_epoch):
                a = order[step * self.config.batch_size : (step + 1) * self.config.batch_size]
                batch = torch.cat([x[a], x[pos_of[a]], x[negatives[a]]])
                ya, yp, yn = self.net(batch).split(len(a))
                rank = triplet_rank_loss(ya, yp, yn, self.config.margin)
                koleo = koleo_loss(ya)
                loss = rank + self.koleo_weight * koleo
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.schedule.step()
                sums += (rank.item(), koleo.item())
            mean = sums / self.steps_per_epoch
            self.history.append({"epoch": epoch + 1, "rank": mean[0], "koleo": mean[1]})
            progress((epoch + 1) / self.epochs)
        self.net.eval()
        return self.net

    def _mine_negatives(self) -> np.ndarray:
        """Each point's rank_neg-th nearest neighbour in the current output space."""
        y = self.net.embed(self.base)
        index = faiss.IndexFlatIP(y.shape[1])
        index.add(y)
        k = min(self.config.rank_neg, len(y) - 1)
        found = index.search(y, k + 1)[1]  # column 0 is (almost always) the point itself
        return found[:, k]


def train_catalyzer(
    vectors: np.ndarray, config: CatalyzerConfig | None = None, progress: Progress | None = None
) -> Catalyzer:
    """Train on ``vectors`` (a seeded sample of ``max_points`` if larger); numpy result."""
    config = config or CatalyzerConfig()
    report = progress or (lambda _f: None)
    started = time.perf_counter()
    x = as_matrix(vectors)
    if len(x) < MIN_POINTS:
        raise ValueError(f"a catalyzer needs at least {MIN_POINTS} vectors to train, got {len(x)}")
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        rng = np.random.default_rng(config.seed)
        if len(x) > config.max_points:
            x = x[np.sort(rng.choice(len(x), config.max_points, replace=False))]
        x = np.ascontiguousarray(x)
        report(0.02)
        selection: dict[float, float] = {}
        koleo_weight = config.koleo_weight
        select_share = 0.0
        if koleo_weight is None:
            n_select = min(len(x), config.selection_points)
            select_work = len(config.koleo_grid) * config.selection_epochs * n_select
            select_share = 0.9 * select_work / (select_work + config.epochs * len(x))
            sample = x[rng.permutation(len(x))[:n_select]]
            selection = _choose_koleo_weight(sample, config, report, select_share)
            koleo_weight = max(selection, key=selection.__getitem__)
        start = 0.05 + select_share
        # column 0 is the point itself (or an exact duplicate of it, as good a positive)
        positives = exact_neighbours(x, x, config.k_pos + 1)[:, 1:]
        trainer = _Trainer(x, positives, config, koleo_weight, config.epochs)
        net = trainer.run(_span(report, start, 0.97 - start))
        params = {
            "config": asdict(config) | {"quantizer": str(config.quantizer)},
            "koleo_weight": koleo_weight,
            "selection_recall_at_10": {str(lam): r for lam, r in selection.items()},
            "n_train": len(x),
            "history": trainer.history,
            "seconds": round(time.perf_counter() - started, 3),
        }
        catalyzer = export(net, params)
    finally:
        torch.set_num_threads(previous_threads)
    report(1.0)
    return catalyzer


def _choose_koleo_weight(
    sample: np.ndarray, config: CatalyzerConfig, report: Progress, share: float
) -> dict[float, float]:
    """Held-out code recall of a short run per λ candidate, on a sample of the data.

    The held-out points play the queries: 1-recall@10 of their exact nearest neighbour among
    the rest, by the quantized codes (the measure the catalyzer is for).
    """
    n_hold = max(1, round(config.holdout_fraction * len(sample)))
    hold, base = sample[:n_hold], sample[n_hold:]
    truth = exact_neighbours(base, hold, 1)
    positives = exact_neighbours(base, base, config.k_pos + 1)[:, 1:]
    width = share / len(config.koleo_grid)
    recall: dict[float, float] = {}
    for j, lam in enumerate(config.koleo_grid):
        trainer = _Trainer(base, positives, config, lam, config.selection_epochs)
        net = trainer.run(_span(report, 0.05 + width * j, width))
        recall[lam] = code_recall(net.embed(base), net.embed(hold), truth, config.quantizer)
    return recall


def _span(report: Progress, start: float, width: float) -> Progress:
    """Maps a sub-task's progress in [0, 1] onto [start, start + width] of the job's."""
    return lambda f: report(start + width * f)
