"""When the worker acts on its own: build, recluster and retrain decisions.

Pure functions over a collection's counters, so the policy is tested without a store and
every decision can be explained by the numbers it saw.

- **Build** the IVF once a collection holds ``build_min_points`` points (below that, exact
  search is fast enough and clusters would be too small to learn routing for).
- **Recluster** when the collection has grown by ``recluster_growth`` (default x2) or shrunk
  to ``recluster_shrink`` (default 1/2) of its size when the clustering was built: the
  lists' balance and nlist no longer fit the data.
- **Retrain** the router when ``retrain_min_new_queries`` queries were logged since the last
  training, or when the active clustering has no router yet (a recluster makes older
  routers inapplicable) and at least ``train_min_queries`` queries are logged.
- **Quantize** a collection created with a catalyzer kind once it is built and holds
  ``catalyzer_min_points`` points: the job trains the catalyzer its codes need (until then
  the lists stay float32). Once: a stored catalyzer serves from then on, and a policy job
  that failed is not scheduled again (``PATCH`` asks anew).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobKind(StrEnum):
    BUILD = "build"
    TRAIN_ROUTER = "train-router"
    QUANTIZE = "quantize"


@dataclass(frozen=True)
class Policy:
    enabled: bool = True
    build_min_points: int = 4096
    recluster_growth: float = 2.0
    recluster_shrink: float = 0.5
    train_min_queries: int = 1000
    retrain_min_new_queries: int = 5000
    catalyzer_min_points: int = 2000


@dataclass(frozen=True)
class CollectionCounters:
    """What the policy needs to know of one collection, read from the store."""

    points: int
    points_at_clustering: int | None  # None: no clustering yet
    router_for_clustering: bool  # a trained router exists for the active clustering
    queries_logged: int
    queries_since_training: int
    pending: frozenset[JobKind] = frozenset()  # queued or running jobs of this collection
    # A catalyzer kind recorded, no catalyzer trained for it, and no failed attempt since.
    catalyzer_wanted: bool = False


def due_jobs(c: CollectionCounters, policy: Policy) -> list[JobKind]:
    """Jobs the worker should enqueue now; never one already pending, at most one of each."""
    if not policy.enabled:
        return []
    due: list[JobKind] = []
    if JobKind.BUILD not in c.pending and _needs_clustering(c, policy):
        due.append(JobKind.BUILD)
    if (
        not due
        and JobKind.BUILD not in c.pending
        and JobKind.TRAIN_ROUTER not in c.pending
        and _needs_training(c, policy)
    ):
        due.append(JobKind.TRAIN_ROUTER)
    if (
        JobKind.BUILD not in due
        and JobKind.BUILD not in c.pending
        and JobKind.QUANTIZE not in c.pending
        and _needs_catalyzer(c, policy)
    ):
        due.append(JobKind.QUANTIZE)
    return due


def _needs_clustering(c: CollectionCounters, policy: Policy) -> bool:
    if c.points_at_clustering is None:
        return c.points >= policy.build_min_points
    base = max(c.points_at_clustering, 1)
    return c.points >= policy.recluster_growth * base or (
        c.points <= policy.recluster_shrink * base and c.points >= policy.build_min_points
    )


def _needs_catalyzer(c: CollectionCounters, policy: Policy) -> bool:
    built = c.points_at_clustering is not None
    return c.catalyzer_wanted and built and c.points >= policy.catalyzer_min_points


def _needs_training(c: CollectionCounters, policy: Policy) -> bool:
    if c.points_at_clustering is None or c.queries_logged < policy.train_min_queries:
        return False
    if not c.router_for_clustering:
        return True
    return c.queries_since_training >= policy.retrain_min_new_queries
