"""Held-out comparison of routers: the gate a new router passes before it serves.

IVF-Flat scans probed lists exactly, so an exact neighbour is found iff its list is probed.
Recall@k at nprobe p is therefore the share of the exact top-k whose list ranks below p in
the router's order. One rank matrix gives the whole recall curve, the nprobe needed for a
target recall, and adaptive routing's recall, with no index search at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from app.engine.metric import as_matrix
from app.engine.routing import AdaptiveRule, Router, adaptive_counts, top_lists

NPROBES = (1, 2, 4, 8, 16, 32)
TARGETS = (0.90, 0.95)
RANK_BLOCK = 4096
# Two paired standard errors: a difference smaller than this is noise (~95% two-sided).
NOISE_Z = 2.0


def neighbour_ranks(
    router: Router, queries: np.ndarray, neighbour_lists: np.ndarray, *, block: int = RANK_BLOCK
) -> np.ndarray:
    """(n, k) 0-based rank of each exact neighbour's list in the router's order.

    Rank = number of lists scoring strictly higher. Padding (-1) gets rank ``nlist``: never
    found, so it still counts in the recall denominator.
    """
    q = as_matrix(queries, router.dim)
    lists = np.asarray(neighbour_lists, dtype=np.int64)
    if lists.ndim != 2 or lists.shape[0] != q.shape[0]:
        raise ValueError("neighbour_lists must be a (n, k) matrix with one row per query")
    out = np.empty(lists.shape, dtype=np.int64)
    for start in range(0, q.shape[0], block):
        s = router.scores(q[start : start + block])
        lb = lists[start : start + block]
        own = np.take_along_axis(s, np.maximum(lb, 0), axis=1)
        ranks = (s[:, None, :] > own[:, :, None]).sum(axis=2)
        out[start : start + len(lb)] = np.where(lb >= 0, ranks, router.nlist)
    return out


def recall_curve(ranks: np.ndarray, nprobes: tuple[int, ...], k: int) -> list[float]:
    """Recall@k at each nprobe (denominator k per query)."""
    r = ranks[:, :k]
    return [float((r < p).mean()) for p in nprobes]


def nprobe_for_recall(ranks: np.ndarray, target: float, k: int, nlist: int) -> int | None:
    """Smallest fixed nprobe reaching mean recall@k ``target``; None if even ``nlist`` fails."""
    r = np.sort(ranks[:, :k].reshape(-1))
    need = math.ceil(target * r.size - 1e-9)
    if need <= 0:
        return 0
    p = int(r[need - 1]) + 1
    return p if p <= nlist else None


@dataclass(frozen=True)
class RoutingReport:
    """Held-out quality of one router; JSON-able through ``asdict``."""

    n_queries: int
    k: int
    nprobes: list[int]
    top1_accuracy: list[float]
    recall: list[float]
    nprobe_for_recall: dict[str, int | None]
    mean_docs_scanned: list[float] | None = None


def evaluate(
    router: Router,
    queries: np.ndarray,
    neighbour_lists: np.ndarray,
    *,
    k: int = 10,
    nprobes: tuple[int, ...] = NPROBES,
    targets: tuple[float, ...] = TARGETS,
    list_sizes: np.ndarray | None = None,
) -> RoutingReport:
    """Top-1 accuracy and recall@k at each nprobe, the nprobe per target recall, and
    (given ``list_sizes``) the mean number of documents scanned per query."""
    ranks = neighbour_ranks(router, queries, neighbour_lists)
    docs = _docs_scanned(router, queries, list_sizes, nprobes)
    return report_from_ranks(ranks, k, router.nlist, nprobes, targets, docs)


def report_from_ranks(
    ranks: np.ndarray,
    k: int,
    nlist: int,
    nprobes: tuple[int, ...] = NPROBES,
    targets: tuple[float, ...] = TARGETS,
    docs_scanned: list[float] | None = None,
) -> RoutingReport:
    return RoutingReport(
        n_queries=int(ranks.shape[0]),
        k=k,
        nprobes=list(nprobes),
        top1_accuracy=recall_curve(ranks, nprobes, 1),
        recall=recall_curve(ranks, nprobes, k),
        nprobe_for_recall={f"{t:.2f}": nprobe_for_recall(ranks, t, k, nlist) for t in targets},
        mean_docs_scanned=docs_scanned,
    )


def _docs_scanned(
    router: Router, queries: np.ndarray, list_sizes: np.ndarray | None, nprobes: tuple[int, ...]
) -> list[float] | None:
    if list_sizes is None:
        return None
    sizes = np.asarray(list_sizes, dtype=np.float64)
    q = as_matrix(queries, router.dim)
    top = min(max(nprobes), router.nlist)
    total = np.zeros(top)
    for start in range(0, q.shape[0], RANK_BLOCK):
        lists = router.route(q[start : start + RANK_BLOCK], top)
        total += np.cumsum(sizes[lists], axis=1).sum(axis=0)
    per_probe = total / q.shape[0]
    return [float(per_probe[min(p, top) - 1]) for p in nprobes]


@dataclass(frozen=True)
class GateResult:
    """The gate's decision and its evidence; ``to_dict`` is what the worker stores."""

    activate: bool
    reason: str
    default_nprobe: int
    noise_z: float
    current: RoutingReport
    candidate: RoutingReport
    recall_diff: list[float]  # candidate - current, per nprobe
    recall_noise: list[float]  # noise_z paired standard errors, per nprobe
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    current: Router,
    candidate: Router,
    queries: np.ndarray,
    neighbour_lists: np.ndarray,
    default_nprobe: int,
    *,
    k: int = 10,
    nprobes: tuple[int, ...] = NPROBES,
    noise_z: float = NOISE_Z,
) -> GateResult:
    """Should ``candidate`` replace ``current``? Judged on held-out queries only.

    Recall@k is the decision metric (it is what a search returns); top-1 accuracy is
    reported. Noise is ``noise_z`` paired standard errors of the per-query recall
    difference: the same queries score both routers, so their shared difficulty cancels.
    Activate iff the candidate wins beyond noise at ``default_nprobe`` and loses beyond noise
    at no other nprobe.
    """
    if current.nlist != candidate.nlist:
        raise ValueError("routers must rank the lists of the same clustering")
    grid = tuple(sorted(set(nprobes) | {default_nprobe}))
    cur_ranks = neighbour_ranks(current, queries, neighbour_lists)
    new_ranks = neighbour_ranks(candidate, queries, neighbour_lists)
    diffs, noise = [], []
    for p in grid:
        d = (new_ranks[:, :k] < p).mean(axis=1) - (cur_ranks[:, :k] < p).mean(axis=1)
        diffs.append(float(d.mean()))
        se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.inf
        noise.append(noise_z * se)
    i = grid.index(default_nprobe)
    wins = diffs[i] > noise[i]
    losses = [p for p, d, e in zip(grid, diffs, noise, strict=True) if d < -e]
    if not wins:
        reason = f"no win beyond noise at default nprobe {default_nprobe}"
    elif losses:
        reason = f"worse beyond noise at nprobe {losses}"
    else:
        reason = f"wins at default nprobe {default_nprobe}, not worse elsewhere"
    return GateResult(
        activate=wins and not losses,
        reason=reason,
        default_nprobe=default_nprobe,
        noise_z=noise_z,
        current=report_from_ranks(cur_ranks, k, current.nlist, grid),
        candidate=report_from_ranks(new_ranks, k, candidate.nlist, grid),
        recall_diff=diffs,
        recall_noise=noise,
        params={"n_queries": len(cur_ranks), "k": k},
    )


@dataclass(frozen=True)
class AdaptiveCalibration:
    """A level (and temperature) that reaches ``target_recall`` on held-out queries.

    ``router`` is the input router with the calibrated temperature; serve it with
    ``router.route_adaptive(queries, level, max_nprobe, rule=rule)``.
    """

    router: Router
    rule: AdaptiveRule
    level: float
    target_recall: float
    recall: float
    mean_probes: float
    max_nprobe: int
    tried: list[dict[str, float | None]]
    mean_scanned: float | None = None  # documents per query, when list sizes were given

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["router"] = {"temperature": self.router.temperature, "kind": str(self.router.kind)}
        d["rule"] = str(self.rule)
        return d


def calibrate_adaptive(
    router: Router,
    queries: np.ndarray,
    neighbour_lists: np.ndarray,
    target_recall: float,
    max_nprobe: int,
    *,
    k: int = 10,
    rule: AdaptiveRule = AdaptiveRule.MASS,
    margin_se: float = 0.0,
    temperature_factors: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0),
    steps: int = 40,
    list_sizes: np.ndarray | None = None,
) -> AdaptiveCalibration:
    """Per temperature, the cheapest level reaching ``target_recall``; keep the cheapest.

    Cheapest in probes, or with ``list_sizes`` (points per list) in documents scanned: a
    router that favours big lists can need fewer probes yet read more.

    The temperature changes how probability mass spreads over lists, hence how probes are
    shared between confident and ambiguous queries, without changing any ranking. Recall
    is monotone in the level (rising with ``mass``, falling with ``threshold``), so a
    bisection finds the mass and a sort of every (query, list) probability finds the
    threshold exactly. ``margin_se`` raises the target by that many standard errors of the
    mean per-query recall on these queries, so that recall on unseen queries still reaches
    ``target_recall`` despite the sampling noise of a small calibration set.
    """
    if not 0.0 < target_recall <= 1.0:
        raise ValueError("target_recall must be in (0, 1]")
    if margin_se < 0:
        raise ValueError("margin_se must be non-negative")
    rule = AdaptiveRule(rule)
    q = as_matrix(queries, router.dim)
    max_nprobe = min(max_nprobe, router.nlist)
    ranks = neighbour_ranks(router, q, neighbour_lists)[:, :k]
    # cost (probes or documents), temperature, level, recall, probes, documents
    best: tuple[float, float, float, float, float, float | None] | None = None
    tried: list[dict[str, float | None]] = []
    for factor in temperature_factors:
        temp = router.temperature * factor
        # The very computation route_adaptive makes, so calibrated counts are served counts.
        probs = router.probabilities(q, temp)
        lists = top_lists(probs, max_nprobe)
        ranked = np.take_along_axis(probs, lists, axis=1)

        def counts(level: float, ranked: np.ndarray = ranked) -> np.ndarray:
            return np.clip(adaptive_counts(ranked, level, rule), 1, max_nprobe)

        def solve(target: float, ranked: np.ndarray = ranked) -> float | None:
            if rule is AdaptiveRule.THRESHOLD:
                return _threshold_for_recall(ranked, ranks, target)
            return _mass_for_recall(counts, ranks, target, steps)

        level = solve(target_recall)
        if level is not None and margin_se > 0:
            per_query = (ranks < counts(level)[:, None]).mean(axis=1)
            se = float(per_query.std(ddof=1) / math.sqrt(len(per_query)))
            level = solve(min(target_recall + margin_se * se, 1.0))
        if level is None:
            tried.append({"temperature": temp, "level": None, "mean_probes": None})
            continue
        needed = counts(level)
        recall, probes = float((ranks < needed[:, None]).mean()), float(needed.mean())
        scanned = None
        if list_sizes is not None:
            read = np.cumsum(np.asarray(list_sizes)[lists], axis=1)
            scanned = float(np.take_along_axis(read, needed[:, None] - 1, axis=1).mean())
        tried.append(
            {"temperature": temp, "level": level, "mean_probes": probes, "mean_scanned": scanned}
        )
        cost = probes if scanned is None else scanned
        if best is None or cost < best[0]:
            best = (cost, temp, level, recall, probes, scanned)
    if best is None:
        raise ValueError(f"no level reaches recall {target_recall} within {max_nprobe} probes")
    _, temp, level, recall, probes, scanned = best
    adaptive = {
        "rule": str(rule),
        "level": level,
        "target_recall": target_recall,
        "margin_se": margin_se,
        "max_nprobe": max_nprobe,
    }
    calibrated = replace(router, temperature=temp, params=router.params | {"adaptive": adaptive})
    return AdaptiveCalibration(
        calibrated, rule, level, target_recall, recall, probes, max_nprobe, tried, scanned
    )


def _mass_for_recall(
    counts: Callable[[float], np.ndarray], ranks: np.ndarray, target: float, steps: int
) -> float | None:
    """Smallest mass whose probe counts reach ``target`` recall (bisection); None if none."""

    def recall(mass: float) -> float:
        return float((ranks < counts(mass)[:, None]).mean())

    lo, hi = 0.0, 1.0
    if recall(hi) < target:
        return None
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if recall(mid) >= target else (mid, hi)
    return hi


def _threshold_for_recall(ranked: np.ndarray, ranks: np.ndarray, target: float) -> float | None:
    """Largest probability threshold whose probe counts reach ``target`` recall; None if none.

    Lowering the threshold admits (query, list) pairs in decreasing probability, each adding
    the neighbours that list holds for that query; the threshold is the probability of the
    pair at which the running recall first reaches the target. A query's best list is always
    probed, so its pairs count as admitted from the start.
    """
    n, width = ranked.shape
    gain = np.zeros((n, width + 1))
    np.add.at(gain, (np.arange(n)[:, None], np.minimum(ranks, width)), 1.0)
    gain = gain[:, :width] / ranks.size
    base = float(gain[:, 0].sum())
    if base >= target:
        return 1.0
    flat_p, flat_gain = ranked[:, 1:].reshape(-1), gain[:, 1:].reshape(-1)
    order = np.argsort(-flat_p, kind="stable")
    reached = np.cumsum(flat_gain[order]) + base >= target - 1e-12
    if not reached.any():
        return None
    return float(flat_p[order[int(np.argmax(reached))]])
