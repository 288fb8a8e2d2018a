"""Search: routing choice, nprobe defaults and checks, hits with labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.service.errors import InvalidInput, NoLearnedRouter
from app.service.live import LiveCollection

ROUTINGS = ("auto", "learned", "centroid", "exact")


@dataclass(frozen=True)
class SearchOptions:
    k: int
    nprobe: int | None
    routing: str
    with_payload: bool


def run_search(
    live: LiveCollection, queries: np.ndarray, opts: SearchOptions, default_nprobe: int
) -> dict[str, Any]:
    """Results for a (n, dim) batch: per-query hits plus how the batch was routed."""
    index = live.index
    clustering = index.clustering
    router = live.router
    if opts.routing == "learned" and router is None:
        raise NoLearnedRouter("no learned router is active for the current clustering")
    if clustering is None or opts.routing == "exact":
        result = index.search(queries, opts.k, exact=True)
        used, version, nprobe = "exact", None, None
    else:
        nlist = clustering.nlist
        nprobe = opts.nprobe
        if nprobe is None:
            nprobe = min(live.record.default_nprobe or default_nprobe, nlist)
        elif nprobe > nlist:
            raise InvalidInput(f"nprobe must be in [1, {nlist}] for this collection")
        learned = router is not None and opts.routing in ("auto", "learned")
        chosen = router if learned else None
        result = index.search(queries, opts.k, nprobe=nprobe, router=chosen)
        used = "learned" if learned else "centroid"
        version = router.version if learned and router is not None else None
    results = [live.hits(result, row, opts.with_payload) for row in range(len(queries))]
    return {
        "results": results,
        "nprobe": nprobe,
        "routing": used,
        "router_version": version,
    }
