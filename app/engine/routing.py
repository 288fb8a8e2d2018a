"""Routers: functions from a query batch to the lists worth probing, best first.

Every router scores the ``nlist`` lists of one clustering and probes the best ones; only the
scores differ. Centroid routing scores with the clustering's own representatives; a learned
router (papers 000/001) scores with trained rows ``W`` (plus a bias, and for ``mlp`` a small
non-linear term). Trained routers are plain numpy arrays: serving them needs no torch, and a
linear router costs exactly what centroid routing costs (one ``nlist x d`` product).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import faiss
import numpy as np

from app.engine.clustering import Algorithm, Clustering
from app.engine.metric import Metric, as_matrix


class RouterKind(StrEnum):
    CENTROID = "centroid"
    LINEAR = "linear"
    MLP = "mlp"


class AdaptiveRule(StrEnum):
    """How adaptive routing turns list probabilities into a probe count per query.

    ``mass``: the fewest lists whose probabilities sum to the level, i.e. the same
    confidence for every query. ``threshold``: every list whose probability reaches the
    level, i.e. a probe wherever its expected gain is worth one: with probabilities that
    estimate each list's share of the top-k (a ``topk`` router), this spends a probe budget
    where it buys the most recall across queries (a greedy knapsack), whereas ``mass`` makes
    the ambiguous queries pay for a recall the confident ones already exceed.
    """

    MASS = "mass"
    THRESHOLD = "threshold"


class CentroidRule(StrEnum):
    """How centroid routing scores a list.

    ``assignment`` uses the clustering's assignment rule (``q.r + b``), e.g. L2 for k-means;
    ``inner_product`` drops the bias (``q.r``), as faiss's inner-product IVF does.
    """

    ASSIGNMENT = "assignment"
    INNER_PRODUCT = "inner_product"


@dataclass(frozen=True, eq=False)
class MlpTerm:
    """The non-linear part of an ``mlp`` router: ``W2 relu(W1 q + b1)``."""

    hidden_weights: np.ndarray  # (h, d)
    hidden_bias: np.ndarray  # (h,)
    output_weights: np.ndarray  # (nlist, h)

    def __call__(self, q: np.ndarray) -> np.ndarray:
        hidden = q @ self.hidden_weights.T
        hidden += self.hidden_bias
        np.maximum(hidden, 0.0, out=hidden)
        return hidden @ self.output_weights.T


@dataclass(frozen=True, eq=False)
class Router:
    """Immutable and tied to one clustering version.

    ``temperature`` scales scores into the softmax that estimates, per list, the
    probability of holding the nearest neighbour; it never changes the ranking.
    """

    kind: RouterKind
    weights: np.ndarray  # (nlist, d)
    bias: np.ndarray | None
    clustering_version: int
    version: int = 0
    temperature: float = 1.0
    mlp: MlpTerm | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", as_matrix(self.weights))
        if self.bias is not None:
            bias = np.ascontiguousarray(self.bias, dtype=np.float32).reshape(-1)
            if bias.shape[0] != self.nlist:
                raise ValueError("bias must have one entry per list")
            object.__setattr__(self, "bias", bias)
        if (self.kind is RouterKind.MLP) != (self.mlp is not None):
            raise ValueError("an mlp router needs its non-linear term, and only it has one")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")

    @property
    def nlist(self) -> int:
        return int(self.weights.shape[0])

    @property
    def dim(self) -> int:
        return int(self.weights.shape[1])

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """(n, nlist) list scores for prepared queries; higher is better."""
        q = as_matrix(queries, self.dim)
        s = q @ self.weights.T
        if self.bias is not None:
            s += self.bias
        if self.mlp is not None:
            s += self.mlp(q)
        return s

    def route(self, queries: np.ndarray, nprobe: int) -> np.ndarray:
        """(n, nprobe) int64 list numbers, best first (all lists if nprobe >= nlist).

        A batch through a linear router ranks with a faiss flat inner-product search over
        ``[W | b]`` and queries ``[q | 1]``: the same scores as ``scores`` (up to float
        rounding), but the product and the top-``nprobe`` selection run fused in faiss,
        several times faster than numpy's product plus a per-row ``argpartition``. One
        query is the exception (``_route_one``).
        """
        if nprobe < 1:
            raise ValueError("nprobe must be at least 1")
        if self.mlp is not None:
            return top_lists(self.scores(queries), nprobe)
        q = as_matrix(queries, self.dim)
        if q.shape[0] == 1:
            return self._route_one(q[0], nprobe)
        augmented = np.empty((q.shape[0], self.dim + 1), dtype=np.float32)
        augmented[:, : self.dim] = q
        augmented[:, self.dim] = 1.0
        _, lists = self._flat().search(augmented, min(nprobe, self.nlist))
        return lists.astype(np.int64, copy=False)

    def _route_one(self, q: np.ndarray, nprobe: int) -> np.ndarray:
        """``route`` for one prepared query: BLAS's matrix-vector product, then the top
        ``nprobe``. faiss's flat search runs one 385-d product per list below its BLAS
        threshold; this costs ~30% fewer instructions (callgrind, 985 lists, 384-d).

        The top is cut at the ``nprobe``-th largest score, found by partitioning the scores
        alone (numpy's SIMD select), then only those are sorted: an ``argpartition`` of a
        few hundred lists sorts them all, carrying indices (callgrind, 246 lists, 16 probes:
        61k -> 38k instructions). Lists tied at the cut come in list order, the first win.
        """
        scores = self.weights.dot(q)
        if self.bias is not None:
            scores += self.bias
        nlist = scores.shape[0]
        if nprobe < nlist:
            cut = scores.copy()
            cut.partition(nlist - nprobe)
            top = (scores >= cut[nlist - nprobe]).nonzero()[0]
        else:
            top = np.arange(nlist)
        order = np.negative(scores.take(top)).argsort(kind="stable")
        return top.take(order[:nprobe])[None, :]

    def _flat(self) -> faiss.IndexFlatIP:
        """``[W | b]`` in a flat index, built on first use (a race builds it twice, harmlessly)."""
        flat = self.__dict__.get("_flat_index")
        if flat is None:
            bias = self.bias if self.bias is not None else np.zeros(self.nlist, np.float32)
            flat = faiss.IndexFlatIP(self.dim + 1)
            flat.add(np.hstack([self.weights, bias[:, None]]))
            object.__setattr__(self, "_flat_index", flat)
        return flat

    def __getstate__(self) -> dict[str, Any]:
        """Pickles without the derived faiss index (rebuilt on first use)."""
        return {k: v for k, v in self.__dict__.items() if k != "_flat_index"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def probabilities(self, queries: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """Softmax of the scores: estimated probability that each list holds the top-1.

        ``temperature`` None is the router's own (a calibration may serve another).
        """
        return softmax(self.scores(queries) / (temperature or self.temperature))

    def route_adaptive(
        self,
        queries: np.ndarray,
        level: float,
        max_nprobe: int,
        min_nprobe: int = 1,
        rule: AdaptiveRule = AdaptiveRule.MASS,
        temperature: float | None = None,
    ) -> np.ndarray:
        """Probe, per query, the lists ``rule`` picks at ``level`` (see ``AdaptiveRule``).

        Returns (n, w) list numbers, w <= max_nprobe, padded with -1, which faiss's
        preassigned search skips; ambiguous queries get more probes, confident ones fewer.
        """
        rule = AdaptiveRule(rule)
        # A threshold of 0 probes all max_nprobe lists (probabilities may underflow to 0).
        if not (0.0 < level <= 1.0 or (rule is AdaptiveRule.THRESHOLD and level == 0.0)):
            raise ValueError("level must be in (0, 1]; a threshold may also be 0")
        max_nprobe = min(max_nprobe, self.nlist)
        probs = self.probabilities(queries, temperature)
        if rule is AdaptiveRule.THRESHOLD:
            # Counted on all lists, then only the widest query's lists are ranked: the same
            # lists as ranking max_nprobe, at a fraction of the sort (served per request).
            needed = adaptive_counts(probs, level, rule)
            needed = np.clip(needed, min(min_nprobe, max_nprobe), max_nprobe)
            lists = top_lists(probs, int(needed.max(initial=1)))
        else:
            lists = top_lists(probs, max_nprobe)
            ranked = np.take_along_axis(probs, lists, axis=1)
            needed = adaptive_counts(ranked, level, rule)
            needed = np.clip(needed, min(min_nprobe, max_nprobe), max_nprobe)
        lists[np.arange(lists.shape[1])[None, :] >= needed[:, None]] = -1
        return lists


def adaptive_counts(ranked: np.ndarray, level: float, rule: AdaptiveRule) -> np.ndarray:
    """(n,) probes per query from its list probabilities sorted best first, before clamping.

    Shared by serving and calibration, so calibrated counts are served counts.
    """
    if rule is AdaptiveRule.THRESHOLD:
        return (ranked >= level).sum(axis=1)
    return (np.cumsum(ranked, axis=1) < level).sum(axis=1) + 1


def default_centroid_rule(clustering: Clustering) -> CentroidRule:
    """The stronger centroid rule, as bench/engine.py and bench/routing.py measured it.

    For ``ip`` data clustered by k-means, ``q.c`` beats the L2 assignment rule from nprobe 8
    on (recall@10 0.90 at 96 probes against 566 on the Debian data): true MIPS neighbours
    have large norms, which ``-|c|^2 / 2`` penalises. Elsewhere (cosine, l2, and rules
    whose bias is zero anyway) the assignment rule is the right one.
    """
    if clustering.metric is Metric.IP and clustering.algorithm is Algorithm.KMEANS:
        return CentroidRule.INNER_PRODUCT
    return CentroidRule.ASSIGNMENT


def centroid_router(clustering: Clustering, rule: CentroidRule | None = None) -> Router:
    """Routing by the clustering's representatives: the baseline learned routers must beat.

    ``rule`` None is the measured-stronger rule for the clustering (``default_centroid_rule``).
    """
    rule = rule or default_centroid_rule(clustering)
    bias = clustering.bias if rule is CentroidRule.ASSIGNMENT else None
    return Router(
        kind=RouterKind.CENTROID,
        weights=clustering.representatives,
        bias=bias,
        clustering_version=clustering.version,
        params={"rule": str(rule)},
    )


def top_lists(scores: np.ndarray, nprobe: int) -> np.ndarray:
    """Column indices of the ``nprobe`` largest scores of each row, best first."""
    nlist = scores.shape[1]
    if nprobe < 1:
        raise ValueError("nprobe must be at least 1")
    if nprobe == 1:
        return np.argmax(scores, axis=1).astype(np.int64)[:, None]
    if nprobe >= nlist:
        return np.argsort(-scores, axis=1, kind="stable").astype(np.int64)
    part = np.argpartition(-scores, nprobe - 1, axis=1)[:, :nprobe]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z
