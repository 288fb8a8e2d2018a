"""Filtered search: a planner between an exact scan and a widened IVF scan of the matching ids.

Both plans filter inside faiss's scan, through an ``IDSelectorBitmap`` over the ids that pass
(a non-matching vector costs one bit test, no distance), never after it: post-filtering the
top candidates of an unfiltered search is what loses results under a selective filter.

The plan follows from the exact number of matches (the payload index counts them):

- The filtered top-k are roughly the unfiltered top-``k / s`` restricted to the matches
  (``s = matches / points``, for a filter unrelated to the vectors), which sit in more lists
  than the top-k. Down to half the points that costs little: on the Debian data (60,631
  documents, 985 lists) the base nprobe finds the filtered top-10 at 50% with recall@10
  0.953 and 0.955 against 0.959 and 0.970 unfiltered (centroid, learned routing). Below
  half, the IVF plan probes ``nprobe * (s / WIDEN_FROM) ** -WIDEN_EXPONENT`` lists: x3.2 at
  10%, what learned routing needed there to keep 0.96 (trained on unfiltered neighbours, it
  ranks the lists of farther ones lower; centroid routing needs less), x17 at 1%, where the
  exact plan mostly takes over. An exponent of 1/2 from s = 1 cost x1.41 lists at 50% for
  +0.015 recall. bench/filters.py measures all of it.
- Within a probed list the selector costs a bit test per vector and a distance per match;
  measured, a 50% selection still costs ~80% of an unfiltered scan (the lists are read
  sequentially either way), a 0.1% one ~5%. Both plans pay that per list, so the IVF plan
  costs ``width / nlist`` of the exact one: from ``EXACT_SHARE`` of the lists on it saves
  less than half and can still miss neighbours, and the exact plan scores every match.
- IVF queries that found fewer than ``min(k, matches)`` hits are searched again with twice the
  lists, up to all of them, where every matching vector is seen: k hits whenever k match.
- A filter that repeats earns a view (``views.py``): a copy of its matching vectors in the
  same lists, where either plan reads only the matches; same plan, same results, at 50%
  half the memory traffic of the selector.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import faiss
import numpy as np

from app.engine.allowed import AllowedIds
from app.engine.ivf import SearchResult, VectorIndex
from app.engine.metric import as_matrix
from app.engine.routing import Router
from app.engine.views import FilterViews

# Beyond this share of the lists an IVF scan saves at most half the exact plan's work.
EXACT_SHARE = 0.5
# Lists grow below half selectivity as (s / 0.5) ** -0.72: x1 at 50%, x3.2 at 10% (measured).
WIDEN_FROM = 0.5
WIDEN_EXPONENT = 0.72


class Plan(StrEnum):
    EXACT = "exact"
    IVF = "ivf"


@dataclass(frozen=True)
class FilteredResult:
    result: SearchResult
    plan: Plan
    nprobe: int | None  # the most lists one query probed; None for the exact plan
    view: bool = False  # searched a copy of the matching vectors (``views``), not a selector


def ivf_width(matches: int, total: int, nprobe: int, nlist: int) -> int:
    """Lists the IVF plan starts with: ``nprobe``, more below half selectivity, at most all."""
    if matches <= 0 or total <= 0:
        return nlist
    selectivity = min(1.0, matches / total)
    widen = max(1.0, (selectivity / WIDEN_FROM) ** -WIDEN_EXPONENT)
    return min(nlist, math.ceil(nprobe * widen - 1e-9))


def choose_plan(matches: int, total: int, nprobe: int, nlist: int | None) -> tuple[Plan, int]:
    """The plan for ``matches`` of ``total`` points, and the IVF's starting nprobe."""
    if nlist is None or matches <= 0 or total <= 0:
        return Plan.EXACT, nlist or 1
    width = ivf_width(matches, total, nprobe, nlist)
    if width >= EXACT_SHARE * nlist:
        return Plan.EXACT, nlist
    return Plan.IVF, width


def filtered_search(
    index: VectorIndex,
    queries: np.ndarray,
    k: int,
    allowed: AllowedIds,
    *,
    nprobe: int,
    router: Router | None = None,
    plan: Plan | None = None,
    views: FilterViews | None = None,
    rerank: int | None = None,
) -> FilteredResult:
    """Top-``k`` among the allowed ids; ``plan`` forces one (benchmarks), else it is chosen.

    ``router`` None routes by the clustering's centroids. A forced IVF plan without a
    clustering is exact (there is nothing to route). With ``views``, the plan runs on the
    filter's view when one is built (same lists, no selector, same results), else through
    the selector, and the time it took counts towards building one. ``rerank``: code
    candidates re-scored exactly (compressed kinds; the exact plan re-scores every match).
    """
    queries = as_matrix(queries, index.dim)
    clustering = index.clustering
    nlist = clustering.nlist if clustering is not None else None
    chosen, width = choose_plan(allowed.count, index.count, nprobe, nlist)
    if plan is Plan.IVF and nlist is not None:
        chosen, width = Plan.IVF, ivf_width(allowed.count, index.count, nprobe, nlist)
    elif plan is Plan.EXACT:
        chosen = Plan.EXACT
    view = views.view(index, allowed) if views is not None else None
    target, selector = (index, allowed.selector) if view is None else (view, None)
    started = time.perf_counter()
    widest: int | None = None
    if chosen is Plan.EXACT or nlist is None:
        chosen = Plan.EXACT
        result = target.search(queries, k, exact=True, selector=selector)
    else:
        need = min(k, allowed.count)
        result, widest = _widening(target, queries, k, need, selector, width, nlist, router, rerank)
    if views is not None and view is None:
        views.charge(index, allowed, time.perf_counter() - started)
    return FilteredResult(result, chosen, widest, view=view is not None)


def _widening(
    index: VectorIndex,
    queries: np.ndarray,
    k: int,
    need: int,
    selector: faiss.IDSelector | None,
    width: int,
    nlist: int,
    router: Router | None,
    rerank: int | None,
) -> tuple[SearchResult, int]:
    """The IVF plan on ``index``: ``widening`` over its routed, filtered searches."""

    def search(rows: np.ndarray, nprobe: int) -> SearchResult:
        return index.search(
            queries[rows], k, nprobe=nprobe, router=router, selector=selector, rerank=rerank
        )

    return widening(search, len(queries), need, width, nlist)


def widening(
    search: Callable[[np.ndarray, int], SearchResult],
    n: int,
    need: int,
    width: int,
    nlist: int,
) -> tuple[SearchResult, int]:
    """The IVF plan's passes over ``n`` queries: ``search(rows, nprobe)`` searches the
    queries ``rows`` with ``nprobe`` lists; those short of ``need`` hits are searched again
    with twice the lists, up to all. Returns the result and the most lists a query probed
    (a sharded collection runs the same passes over its shards)."""
    first = search(np.arange(n), width)
    scores, ids = first.scores, first.ids
    # Hits come first, -1 pads the rest: the need-th column tells who is short.
    if need == 0 or bool((ids[:, need - 1] >= 0).all()):
        return first, width
    widths = np.full(len(ids), width, dtype=np.int64)
    scanned = first.scanned * len(ids)  # every pass's vectors count
    rescored = first.candidates * len(ids)
    short = np.flatnonzero(ids[:, need - 1] < 0)
    while len(short) and width < nlist:
        width = min(2 * width, nlist)
        again = search(short, width)
        scores[short], ids[short] = again.scores, again.ids
        widths[short] = width
        scanned += again.scanned * len(short)
        rescored += again.candidates * len(short)
        short = short[again.ids[:, need - 1] < 0]
    probes = float(widths.mean()) if n else 0.0
    result = SearchResult(
        scores, ids, probes, scanned / n if n else 0.0, rescored / n if n else 0.0
    )
    return result, int(widths.max(initial=0))
