"""Training learned routers (papers 000/001): the only engine module that imports torch.

A router scores the ``nlist`` lists of a clustering for a query; training treats that as a
ranking problem with free labels (the lists holding the exact neighbours, see ``labels``) and
minimises softmax cross-entropy, a consistent surrogate of MRR. ``W`` starts at the
clustering's representatives (and the bias at its bias), so training begins from centroid
routing and can only move away from it where the queries say so. Validation picks the
epoch count, then a refit on all the queries gives the returned parameters. The result is a
``routing.Router`` of plain numpy arrays: serving it needs no torch.

Measured levers (Debian data, ``bench/routing.py``): the ``graded`` target (labels share
the near-ties of the nearest neighbour by exact score) lifts top-1 at nprobe 1 by 1.6-3.5
points over hard ``top1`` labels and recall@10 by 1-5 points (on ip to the ``topk`` level);
the refit adds ~0.4 point of top-1. Tie-aware labels change nothing there: every exact tie
is between identical vectors, which always share a list.
A stronger pull towards the representatives, label smoothing, query dropout and selecting
the epoch by validation top-1 instead of MRR did not help.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from app.engine.clustering import Clustering
from app.engine.labels import LABEL_TEMPERATURE, Objective, target_weights
from app.engine.metric import as_matrix
from app.engine.routing import MlpTerm, Router, RouterKind

Progress = Callable[[float], None]
SELECT = ("mrr", "top1", "loss")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; stored verbatim in ``Router.params`` (hyperparameters are data)."""

    kind: RouterKind = RouterKind.LINEAR
    objective: Objective = Objective.MIXED
    k: int = 10  # neighbours per query the ``topk``/``mixed`` targets spread over
    top1_weight: float = 0.5  # share of the ``top1`` target in ``mixed``
    # ``graded`` softmax temperature over the neighbours' exact scores, in units of the mean
    # score spread between the first and the k-th neighbour (labels.graded_weights)
    label_temperature: float = LABEL_TEMPERATURE
    epochs: int = 40
    batch_size: int = 512
    lr: float = 0.01  # Adam step, relative to the scale of the representatives
    weight_decay: float = 2e-6  # relative L2 pull of W towards the representatives
    bias: bool = False
    dropout: float = 0.0  # dropout on the query's coordinates while training (regulariser)
    hidden: int = 256  # width of the ``mlp`` hidden layer
    val_fraction: float = 0.1
    patience: int = 5  # epochs without a better validation score before stopping
    # Validation score for early stopping and for picking the returned epoch: ``mrr`` (of
    # the top-1 label), ``top1`` or ``loss``. Val loss bottoms out epochs before ranking
    # quality does (the temperature sharpens, confidently wrong queries cost ever more), so
    # stopping on it stops early.
    select: str = "mrr"
    # After validation has picked the epoch count, train again from the start on every
    # query (validation included) for that many epochs and return those parameters: on the
    # Debian data +0.004 top-1 at nprobe 1 on average for twice the training time.
    refit: bool = True
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None keeps torch's setting

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", RouterKind(self.kind))
        object.__setattr__(self, "objective", Objective(self.objective))
        if self.kind is RouterKind.CENTROID:
            raise ValueError("centroid routers are not trained; see routing.centroid_router")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in (0, 1)")
        if self.epochs < 1 or self.batch_size < 1 or self.k < 1:
            raise ValueError("epochs, batch_size and k must be positive")
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {SELECT}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.label_temperature <= 0:
            raise ValueError("label_temperature must be positive")


class _Scorer(torch.nn.Module):
    """Torch mirror of ``Router.scores``: ``W q + b (+ W2 relu(W1 q + b1))``, then ``/ T``.

    Parameters are trained in unit scale (``W = w_scale * V`` with V's entries ~1, the bias
    and the mlp output in units of the initial score spread, the mlp input divided by the
    mean query norm), so one learning rate and weight decay fit ip, cosine and l2 alike.
    """

    def __init__(
        self, clustering: Clustering, config: TrainConfig, score_scale: float, query_scale: float
    ) -> None:
        super().__init__()
        reps = clustering.representatives
        self.w_scale = float(max(np.sqrt(np.mean(reps.astype(np.float64) ** 2)), 1e-12))
        self.score_scale = score_scale
        self.query_scale = query_scale
        self.weight = torch.nn.Parameter(torch.from_numpy(reps / self.w_scale))
        self.anchor: torch.Tensor
        self.register_buffer("anchor", self.weight.detach().clone())
        self.bias = (
            torch.nn.Parameter(torch.from_numpy(clustering.bias / score_scale))
            if config.bias
            else None
        )
        # Temperature starts at the score spread: a softmax neither flat nor one-hot.
        self.log_temp = torch.nn.Parameter(torch.tensor(0.0))
        self.hidden: torch.nn.Linear | None = None
        self.out: torch.nn.Linear | None = None
        if config.kind is RouterKind.MLP:
            self.hidden = torch.nn.Linear(clustering.dim, config.hidden)
            self.out = torch.nn.Linear(config.hidden, clustering.nlist, bias=False)
            # Zero output layer: training starts exactly at the linear (centroid) router.
            torch.nn.init.zeros_(self.out.weight)

    def state_dict_copy(self) -> dict[str, torch.Tensor]:
        return {name: t.detach().clone() for name, t in self.state_dict().items()}

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """Scores in units of ``score_scale``, divided by the learnt temperature."""
        s = (q @ self.weight.T) * (self.w_scale / self.score_scale)
        if self.bias is not None:
            s = s + self.bias
        if self.hidden is not None and self.out is not None:
            s = s + self.out(torch.relu(self.hidden(q / self.query_scale)))
        return s / self.log_temp.exp()


def train_router(
    queries: np.ndarray,
    neighbour_lists: np.ndarray,
    clustering: Clustering,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    *,
    neighbour_scores: np.ndarray | None = None,
) -> Router:
    """Train a ``linear`` or ``mlp`` router for ``clustering`` on prepared ``queries``.

    ``neighbour_lists`` is (n, >=k): the list of each query's exact top-k neighbours, best
    first (``labels.list_labels``); ``neighbour_scores`` their exact scores
    (``labels.exact_search``), needed by the ``graded`` objective only. A ``val_fraction``
    of the queries is held out for early stopping; the parameters of the best validation
    epoch are returned (or, with ``refit``, a refit on all queries for that many epochs).
    """
    config = config or TrainConfig()
    q_all = as_matrix(queries, clustering.dim)
    k = 1 if config.objective is Objective.TOP1 else config.k
    lists_all = np.asarray(neighbour_lists, dtype=np.int64)
    if lists_all.ndim != 2 or lists_all.shape[0] != q_all.shape[0]:
        raise ValueError("neighbour_lists must have one row per query")
    if lists_all.max() >= clustering.nlist:
        raise ValueError("neighbour_lists refer to lists beyond the clustering's nlist")
    weights_all = target_weights(
        lists_all,
        config.objective,
        k,
        config.top1_weight,
        scores=neighbour_scores,
        temperature=config.label_temperature,
    )
    lists_all = np.maximum(lists_all[:, :k], 0)  # padded (-1) entries carry zero weight

    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        router, stats = _fit(q_all, lists_all, weights_all, clustering, config, progress)
    finally:
        torch.set_num_threads(previous_threads)
    stats["train_seconds"] = round(time.perf_counter() - started, 3)
    params = {"config": _jsonable(asdict(config)), "stats": stats}
    return Router(
        kind=router.kind,
        weights=router.weights,
        bias=router.bias,
        clustering_version=clustering.version,
        temperature=router.temperature,
        mlp=router.mlp,
        params=params,
    )


def _fit(
    q_all: np.ndarray,
    lists_all: np.ndarray,
    weights_all: np.ndarray,
    clustering: Clustering,
    config: TrainConfig,
    progress: Progress | None,
) -> tuple[Router, dict[str, Any]]:
    n = q_all.shape[0]
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    order = rng.permutation(n)
    n_val = max(1, round(n * config.val_fraction))
    if n - n_val < 1:
        raise ValueError("too few queries to hold out a validation split")
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    data = _Data(
        torch.from_numpy(q_all), torch.from_numpy(lists_all), torch.from_numpy(weights_all)
    )
    sample = q_all[train_idx[:2048]]
    query_scale = float(max(np.linalg.norm(sample, axis=1).mean(), 1e-12))
    spread = _score_spread(sample, clustering, config.bias)

    def fresh() -> _Scorer:
        return _Scorer(clustering, config, spread, query_scale)

    # With a refit, selection is the first half of the work and the refit the second.
    share = 0.5 if config.refit else 1.0
    model = fresh()
    val_t = torch.from_numpy(val_idx)
    initial = best = data.val_scores(model, val_t)
    best_val = _badness(best, config.select)
    best_state = model.state_dict_copy()
    best_epoch, stale, history = 0, 0, []
    trainer = _Trainer(model, data, config, rng)
    for epoch in range(1, config.epochs + 1):
        total = trainer.epoch(train_idx)
        vs = data.val_scores(trainer.model, val_t)
        val = _badness(vs, config.select)
        history.append([round(total, 5)] + [round(x, 5) for x in vs])
        if val < best_val - (1e-4 if config.select == "loss" else 1e-9):
            best, best_val, best_epoch, stale = vs, val, epoch, 0
            best_state = trainer.model.state_dict_copy()
        else:
            stale += 1
        if progress is not None:
            progress(share * epoch / config.epochs)
        if stale >= config.patience:
            break
    model = fresh()
    model.load_state_dict(best_state)
    refit_epochs = 0
    if config.refit and best_epoch > 0:
        # Validation chose the epoch count; the parameters come from all the queries. A
        # selection that never beat the centroid start (best_epoch 0) is kept as it is.
        refit_epochs = best_epoch
        trainer = _Trainer(fresh(), data, config, rng)
        every = np.arange(n)
        for epoch in range(1, refit_epochs + 1):
            trainer.epoch(every)
            if progress is not None:
                progress(share + (1 - share) * epoch / refit_epochs)
        model = trainer.model
    if progress is not None:
        progress(1.0)
    stats: dict[str, Any] = {
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "refit_epochs": refit_epochs,
        "n_refit": n if refit_epochs else 0,
        "select": config.select,
        "initial_val_loss": round(initial[0], 5),
        "best_val_loss": round(best[0], 5),
        "initial_val_top1": round(initial[1], 5),
        "best_val_top1": round(best[1], 5),
        "initial_val_mrr": round(initial[2], 5),
        "best_val_mrr": round(best[2], 5),
        "history": history,  # per epoch: train loss, val loss, val top-1, val MRR
    }
    return _to_router(model, config, clustering), stats


def _badness(v: tuple[float, float, float], select: str) -> float:
    return {"loss": v[0], "top1": -v[1], "mrr": -v[2]}[select]


@dataclass(frozen=True)
class _Data:
    """All queries with their target lists and weights, indexed by row."""

    q: torch.Tensor
    lists: torch.Tensor
    weights: torch.Tensor

    def loss(self, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the scores of rows ``idx`` against their target weights."""
        logp = torch.log_softmax(scores, dim=1)
        return -(logp.gather(1, self.lists[idx]) * self.weights[idx]).sum(dim=1).mean()

    def val_scores(self, model: _Scorer, idx: torch.Tensor) -> tuple[float, float, float]:
        """Validation loss, top-1 accuracy and MRR of the top-1 label."""
        with torch.no_grad():
            s = model(self.q[idx])
            loss = self.loss(s, idx)
            own = s.gather(1, self.lists[idx, :1])
            rank = (s > own).sum(dim=1)
            top1 = (rank == 0).double().mean()
            mrr = (1.0 / (rank + 1).double()).mean()
        return float(loss), float(top1), float(mrr)


class _Trainer:
    """Adam on one model, one shuffled epoch at a time (the rng is shared, so runs are seeded)."""

    def __init__(
        self, model: _Scorer, data: _Data, config: TrainConfig, rng: np.random.Generator
    ) -> None:
        self.model, self.data, self.config, self.rng = model, data, config, rng
        self.opt = torch.optim.Adam(model.parameters(), lr=config.lr)

    def epoch(self, rows: np.ndarray) -> float:
        """One shuffled pass over ``rows``; returns the mean training loss."""
        model, data, config = self.model, self.data, self.config
        model.train()
        perm = torch.from_numpy(rows[self.rng.permutation(len(rows))])
        total = 0.0
        for start in range(0, len(perm), config.batch_size):
            idx = perm[start : start + config.batch_size]
            x = data.q[idx]
            if config.dropout > 0:
                x = torch.nn.functional.dropout(x, config.dropout)
            loss = data.loss(model(x), idx)
            if config.weight_decay > 0:
                drift = ((model.weight - model.anchor) ** 2).sum()
                loss = loss + config.weight_decay * drift
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.item() * len(idx)
        model.eval()
        return total / len(perm)


def _score_spread(q: np.ndarray, clustering: Clustering, bias: bool) -> float:
    """Mean per-query standard deviation of the initial scores: the training's score unit."""
    s = q @ clustering.representatives.T
    if bias:
        s += clustering.bias
    return float(max(s.std(axis=1).mean(), 1e-3))


def _to_router(model: _Scorer, config: TrainConfig, clustering: Clustering) -> Router:
    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float32).copy()

    unit = model.score_scale
    mlp = None
    if model.hidden is not None and model.out is not None:
        mlp = MlpTerm(
            arr(model.hidden.weight) / model.query_scale,
            arr(model.hidden.bias),
            arr(model.out.weight) * unit,
        )
    return Router(
        kind=config.kind,
        weights=arr(model.weight) * model.w_scale,
        bias=None if model.bias is None else arr(model.bias) * unit,
        clustering_version=clustering.version,
        temperature=float(model.log_temp.detach().exp()) * unit,
        mlp=mlp,
    )


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {key: str(v) if isinstance(v, str) else v for key, v in d.items()}
