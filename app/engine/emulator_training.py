"""Training paper 002's emulator in torch (worker and bench only; serving never imports this).

Labels come from exact search (the caller's): level 1 learns the list of the query's TRUE
nearest neighbour (the paper labelled a query with its own cluster), level 2 of list ``c``
learns which of ``c``'s members that neighbour is, from the queries whose neighbour is in
``c``. Both levels train with softmax cross-entropy (the paper's categorical cross-entropy)
under Adam for a fixed, small number of epochs (the paper: SGD, up to 500 epochs with early
stopping), so training stays bounded on a shared machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from app.engine.clustering import Clustering
from app.engine.emulator import (
    CONV_ARRAYS,
    PAPER_CHANNELS,
    Architecture,
    ClusterModel,
    ConvStack,
    Emulator,
    NeighbourModels,
    pool_for,
)
from app.engine.labels import Objective
from app.engine.metric import Metric, as_matrix
from app.engine.routing import RouterKind
from app.engine.training import TrainConfig, train_router

Progress = Callable[[float], None]


@dataclass(frozen=True)
class EmulatorConfig:
    """Hyperparameters; stored with the emulator (hyperparameters are data)."""

    level1: Architecture = Architecture.LINEAR
    level2: Architecture = Architecture.LINEAR
    level1_epochs: int = 20
    level2_epochs: int = 10
    paper_epochs: int = 8
    batch_size: int = 256
    paper_lr: float = 1e-3
    linear_lr: float = 1e-4  # level 2 linear: relative to the member vectors' scale
    anchor: float = 1e-3  # level 2 linear: pull of the representatives towards the members
    # Bounds on the paper network (see emulator.pool_for): the dense weights of level 1, and
    # of all level-2 lists together (20M: 80 MB of float32), and the conv layers' cost.
    max_dense_weights: int = 20_000_000
    max_positions: int = 24
    seed: int = 0
    # One torch thread: level 2 is many small models, whose steps threads only slow down.
    threads: int | None = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "level1", Architecture(self.level1))
        object.__setattr__(self, "level2", Architecture(self.level2))


@dataclass(frozen=True)
class EmulatorData:
    """Prepared docs and queries with their exact labels (rows into ``docs``)."""

    docs: np.ndarray  # (N, d) prepared
    doc_ids: np.ndarray  # (N,) int64 ids the emulator proposes
    doc_lists: np.ndarray  # (N,) list of each doc under ``clustering``
    queries: np.ndarray  # (n, d) prepared
    # (n, K) rows of each query's exact top-K, best first: column 0 labels both levels;
    # the linear level 2 learns the whole top-K found in the list (see ``_linear_members``)
    nearest: np.ndarray
    # (n,) row of the query itself among the docs, or -1: it is never its own neighbour
    itself: np.ndarray | None = None


def train_emulator(
    data: EmulatorData,
    clustering: Clustering,
    config: EmulatorConfig | None = None,
    progress: Progress | None = None,
    *,
    trained_seq: int = 0,
) -> Emulator:
    config = config or EmulatorConfig()
    report = progress or (lambda _f: None)
    torch.manual_seed(config.seed)
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    try:
        labels1 = data.doc_lists[data.nearest[:, 0]]
        level1 = _level1(data.queries, labels1, clustering, config)
        report(0.4)
        level2 = _level2(data, clustering, config, lambda f: report(0.4 + 0.6 * f))
    finally:
        torch.set_num_threads(previous_threads)
    emulator = Emulator(level1, level2, clustering.version, trained_seq)
    params = emulator.describe() | {
        "config": config_dict(config),
        "train_seconds": round(time.perf_counter() - started, 3),
    }
    return Emulator(level1, level2, clustering.version, trained_seq, params=params)


# -- level 1 ----------------------------------------------------------------------------------


def _level1(
    q: np.ndarray, labels: np.ndarray, clustering: Clustering, config: EmulatorConfig
) -> ClusterModel:
    if config.level1 is Architecture.LINEAR:
        router = train_router(
            q,
            labels[:, None],
            clustering,
            TrainConfig(
                kind=RouterKind.LINEAR,
                objective=Objective.TOP1,
                epochs=config.level1_epochs,
                refit=False,
                bias=True,  # l2 lists need the -|c|^2/2 term (routers drop it by default)
                seed=config.seed,
            ),
        )
        bias = router.bias if router.bias is not None else np.zeros(router.nlist, np.float32)
        # The router's temperature scales scores, never their order: routing ignores it.
        return ClusterModel(Architecture.LINEAR, router.weights, bias)
    pool = pool_for(q.shape[1], clustering.nlist, config.max_dense_weights, config.max_positions)
    net = _PaperNet(q.shape[1], clustering.nlist, pool)
    _fit(net, torch.from_numpy(q), torch.from_numpy(labels), None, config.paper_epochs, config)
    conv, weights, bias = net.export()
    return ClusterModel(Architecture.PAPER, weights, bias, conv)


# -- level 2 ----------------------------------------------------------------------------------


def _level2(
    data: EmulatorData, clustering: Clustering, config: EmulatorConfig, progress: Progress
) -> NeighbourModels:
    nlist = clustering.nlist
    order = np.argsort(data.doc_lists, kind="stable")
    offsets = np.searchsorted(data.doc_lists[order], np.arange(nlist + 1)).astype(np.int64)
    position = np.empty(len(order), np.int64)  # doc row -> its index within its list
    position[order] = np.arange(len(order)) - offsets[data.doc_lists[order]]
    labels1 = data.doc_lists[data.nearest[:, 0]]
    centroids = np.ascontiguousarray(clustering.representatives, np.float32)
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    convs: list[ConvStack] = []
    d = data.docs.shape[1]
    # The dense layers of all lists together hold (features x every member) weights.
    pool = pool_for(2 * d, len(data.docs), config.max_dense_weights, config.max_positions)
    for c in range(nlist):
        rows = order[offsets[c] : offsets[c + 1]]
        asked = np.flatnonzero(labels1 == c)
        q = data.queries[asked]
        target = position[data.nearest[asked, 0]]
        masked = None
        if data.itself is not None:
            own = data.itself[asked]
            inside = (own >= 0) & (data.doc_lists[np.maximum(own, 0)] == c)
            masked = np.where(inside, position[np.maximum(own, 0)], -1)
        if config.level2 is Architecture.LINEAR:
            near = data.nearest[asked]
            near_pos = np.where(data.doc_lists[near] == c, position[near], -1)
            w, b = _linear_members(data.docs[rows], q, near_pos, masked, clustering.metric, config)
        else:
            x = np.concatenate([q, np.broadcast_to(centroids[c], q.shape)], axis=1)
            net = _PaperNet(2 * d, len(rows), pool)
            if len(rows) and len(asked):
                mask_t = torch.from_numpy(masked) if masked is not None else None
                _fit(
                    net,
                    torch.from_numpy(x),
                    torch.from_numpy(target),
                    mask_t,
                    config.paper_epochs,
                    config,
                )
            conv, w, b = net.export()
            convs.append(conv)
        weights.append(w)
        biases.append(b)
        progress((c + 1) / nlist)
    conv_all = None
    if convs:
        stacked = {n: np.stack([getattr(cv, n) for cv in convs]) for n in CONV_ARRAYS}
        conv_all = ConvStack(**stacked, pool=pool)
    return NeighbourModels(
        config.level2,
        data.doc_ids[order].astype(np.int64),
        offsets,
        np.concatenate(weights) if weights else np.empty((0, d), np.float32),
        np.concatenate(biases) if biases else np.empty(0, np.float32),
        centroids,
        conv_all,
    )


def _init_members(x: np.ndarray, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """Scores equal to the exact similarity's ranking: ``q.x`` (ip, cosine on unit vectors),
    ``2 q.x - |x|^2`` (l2: ``-|q - x|^2`` up to the query's own norm)."""
    if metric is Metric.L2:
        return 2.0 * x, -np.einsum("ij,ij->i", x, x)
    return x.copy(), np.zeros(len(x), np.float32)


def _linear_members(
    members: np.ndarray,
    q: np.ndarray,
    near: np.ndarray,
    masked: np.ndarray | None,
    metric: Metric,
    config: EmulatorConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-point representatives, starting from the exact scorer, nudged by cross-entropy
    towards the query's exact top-K inside the list (``near``: their positions, -1 outside),
    each an equal share of the target, and pulled back towards the start (``anchor``).

    The list proposes several candidates, so it must rank the whole top-K high: trained on
    the top-1 alone (the paper's label), the representatives memorise one query per member
    and recall@10 of the proposals fell from 1.0 to 0.70 on the synthetic test set."""
    w0, b0 = _init_members(as_matrix(members), metric)
    if len(members) < 2 or len(q) == 0:
        return w0.astype(np.float32), b0.astype(np.float32)
    w = torch.nn.Parameter(torch.from_numpy(w0.astype(np.float32)))
    b = torch.nn.Parameter(torch.from_numpy(b0.astype(np.float32)))
    spread = float(np.std(q @ w0.T)) or 1.0
    log_scale = torch.nn.Parameter(torch.tensor(float(np.log(1.0 / spread))))
    scale = float(np.abs(w0).mean()) or 1.0
    opt = torch.optim.Adam([w, b, log_scale], lr=config.linear_lr * scale)
    target = np.zeros((len(q), len(members)), np.float32)
    rows, cols = np.nonzero(near >= 0)
    target[rows, near[rows, cols]] = 1.0
    target /= np.maximum(target.sum(axis=1, keepdims=True), 1.0)
    qt, tt = torch.from_numpy(q), torch.from_numpy(target)
    w0t = torch.from_numpy(w0.astype(np.float32))
    mt = torch.from_numpy(masked) if masked is not None else None
    for _ in range(config.level2_epochs):
        for idx in torch.randperm(len(q)).split(config.batch_size):
            logits = _masked((qt[idx] @ w.T + b) * log_scale.exp(), mt, idx)
            logp = torch.log_softmax(logits, dim=1).clamp_min(-1e4)  # masked: -inf, weight 0
            loss = -(tt[idx] * logp).sum(1).mean()
            loss = loss + config.anchor * ((w - w0t) ** 2).sum() / scale**2
            opt.zero_grad()
            loss.backward()
            opt.step()
    return w.detach().numpy().copy(), b.detach().numpy().copy()


# -- the paper's network ----------------------------------------------------------------------


class _PaperNet(torch.nn.Module):
    """conv(1->128) relu, max-pool, conv(128->128) relu, conv(128->256) relu, flatten, dense."""

    def __init__(self, length: int, classes: int, pool: int) -> None:
        super().__init__()
        c1, c2, c3 = PAPER_CHANNELS
        self.pool = pool
        self.conv1 = torch.nn.Conv1d(1, c1, 1)
        self.conv2 = torch.nn.Conv1d(c1, c2, 1)
        self.conv3 = torch.nn.Conv1d(c2, c3, 1)
        self.dense = torch.nn.Linear(c3 * (length // pool), max(classes, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x[:, None, :]))
        h = torch.nn.functional.max_pool1d(h, self.pool)
        h = torch.relu(self.conv2(h))
        h = torch.relu(self.conv3(h))
        return self.dense(h.flatten(1))

    def export(self) -> tuple[ConvStack, np.ndarray, np.ndarray]:
        def arr(t: torch.Tensor | None) -> np.ndarray:
            assert t is not None  # every layer has a bias
            return t.detach().numpy().astype(np.float32).copy()

        conv = ConvStack(
            arr(self.conv1.weight.reshape(-1)),
            arr(self.conv1.bias),
            arr(self.conv2.weight[:, :, 0]),
            arr(self.conv2.bias),
            arr(self.conv3.weight[:, :, 0]),
            arr(self.conv3.bias),
            pool=self.pool,
        )
        return conv, arr(self.dense.weight), arr(self.dense.bias)


def _fit(
    net: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    masked: torch.Tensor | None,
    epochs: int,
    config: EmulatorConfig,
) -> None:
    opt = torch.optim.Adam(net.parameters(), lr=config.paper_lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(config.batch_size):
            loss = torch.nn.functional.cross_entropy(_masked(net(x[idx]), masked, idx), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def _masked(logits: torch.Tensor, masked: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor:
    """A query that is itself a member never counts as its own neighbour (bench words)."""
    if masked is None:
        return logits
    m = masked[idx]
    rows = torch.nonzero(m >= 0).flatten()
    if len(rows) == 0:
        return logits
    logits = logits.clone()
    logits[rows, m[rows]] = float("-inf")
    return logits


def config_dict(config: EmulatorConfig) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Architecture) else v for k, v in asdict(config).items()}
