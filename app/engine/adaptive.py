"""Adaptive probing as served: a learned router's calibrated threshold per recall target.

``target_recall`` with a learned router probes, per query, every list whose probability of
holding its neighbours reaches a level (``AdaptiveRule.THRESHOLD``): confident queries take
few lists, ambiguous ones many. Each level, and the softmax temperature it applies to, is
calibrated on held-out logged queries for one target of ``TARGETS``; a request is served by
the smallest calibrated target at or above its own. Two choices make the promise honest:

- the level reaches the target plus ``z`` standard errors of the per-query recall on the
  calibration queries (``z`` = the recall table's one-sided 95% bound), so it holds on new
  queries about as often as the fixed-nprobe table's lower bound does;
- the temperature is chosen for the fewest *documents* scanned (list sizes), not the fewest
  probes: a learned router favours big lists, and documents are what a scan costs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from app.engine.gate import calibrate_adaptive
from app.engine.recall_table import LOWER_BOUND_Z
from app.engine.routing import AdaptiveRule, Router

TARGETS = (0.80, 0.85, 0.90, 0.95, 0.98, 0.99)
# The most lists one query may probe; beyond it an exact scan is the better plan anyway.
MAX_NPROBE = 256


@dataclass(frozen=True)
class AdaptiveLevel:
    """One target's calibration, with what it did on the calibration queries."""

    target: float
    temperature: float
    level: float
    recall: float
    mean_nprobe: float
    mean_scanned: float


@dataclass(frozen=True)
class AdaptiveCalibration:
    """Stored with the router version it was measured for (``Router.params["adaptive"]``),
    and measured afresh into the recall table by each later training while it serves."""

    k: int
    n_queries: int
    margin_z: float
    max_nprobe: int
    levels: list[AdaptiveLevel]
    rule: str = str(AdaptiveRule.THRESHOLD)
    codes: dict[str, Any] | None = None  # ``recall_table.code_stamp`` of the lists measured

    def for_target(self, target: float) -> AdaptiveLevel | None:
        """The cheapest calibration that promises at least ``target``; None if none does."""
        return next((lv for lv in self.levels if lv.target >= target - 1e-9), None)

    def probe_lists(self, router: Router, level: AdaptiveLevel, queries: np.ndarray) -> np.ndarray:
        """(n, max_nprobe) lists per query, -1 padded: what ``VectorIndex.search`` takes."""
        return router.route_adaptive(
            queries,
            level.level,
            self.max_nprobe,
            rule=AdaptiveRule(self.rule),
            temperature=level.temperature,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdaptiveCalibration:
        return cls(**{**d, "levels": [AdaptiveLevel(**lv) for lv in d["levels"]]})


def calibrate(
    router: Router,
    queries: np.ndarray,
    neighbour_lists: np.ndarray,
    list_sizes: np.ndarray,
    *,
    k: int = 10,
    targets: tuple[float, ...] = TARGETS,
    margin_z: float = LOWER_BOUND_Z,
    max_nprobe: int = MAX_NPROBE,
    kept: np.ndarray | None = None,
    codes: dict[str, Any] | None = None,
) -> AdaptiveCalibration:
    """Calibrate every target ``router`` can reach on prepared held-out ``queries``.

    ``neighbour_lists`` (n, >= k): the list of each query's exact top-k; ``list_sizes``:
    points per list. A target no level reaches within ``max_nprobe`` probes is left out
    (such requests fall back to the fixed-nprobe recall table). Code lists: ``kept`` (n, k)
    says which neighbours the coded search keeps at ``max_nprobe`` (capped at nlist;
    ``recall_table.kept_neighbours``), and so at any fewer probes of their lists; the others
    count as lost. ``codes``: their ``code_stamp``.
    """
    max_nprobe = min(max_nprobe, router.nlist)
    if kept is not None:
        neighbour_lists = np.where(kept, neighbour_lists[:, :k], -1)
    levels: list[AdaptiveLevel] = []
    for target in targets:
        try:
            cal = calibrate_adaptive(
                router,
                queries,
                neighbour_lists,
                target,
                max_nprobe,
                k=k,
                rule=AdaptiveRule.THRESHOLD,
                margin_se=margin_z,
                list_sizes=list_sizes,
            )
        except ValueError:
            continue
        assert cal.mean_scanned is not None  # list sizes were given
        levels.append(
            AdaptiveLevel(
                target=target,
                temperature=cal.router.temperature,
                level=cal.level,
                recall=round(cal.recall, 6),
                mean_nprobe=round(cal.mean_probes, 3),
                mean_scanned=round(cal.mean_scanned, 1),
            )
        )
    return AdaptiveCalibration(
        k=k,
        n_queries=len(queries),
        margin_z=margin_z,
        max_nprobe=max_nprobe,
        levels=levels,
        codes=codes,
    )
