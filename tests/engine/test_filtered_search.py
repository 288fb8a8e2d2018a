"""Filtered search against the oracle: exact search over the matching vectors only.

Every plan (chosen, forced exact, forced IVF) and both routings (centroids, a learned-style
linear router), on random data and a slice of the Debian data, at 50% to 0.1% selectivity.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.allowed import AllowedIds
from app.engine.clustering import Algorithm, train_clustering
from app.engine.evaluation import recall_at_k
from app.engine.filtered import Plan, choose_plan, filtered_search
from app.engine.filters import parse_filter
from app.engine.ivf import VectorIndex
from app.engine.metric import Metric, prepare
from app.engine.payload_index import PayloadIndex
from app.engine.routing import Router, RouterKind
from bench.debian import Dataset
from tests.engine.conftest import brute_force, true_scores

K = 10
NLIST = 64
NPROBE = 4
SELECTIVITIES = (0.5, 0.1, 0.01, 0.001)


def build(x: np.ndarray, metric: Metric) -> tuple[VectorIndex, PayloadIndex, np.ndarray]:
    """Index and payloads under ids 100, 103, 106, ... with ``bucket`` uniform in [0, 1000)."""
    clustering = train_clustering(prepare(x, metric), NLIST, Algorithm.KMEANS, metric, seed=1)
    ids = 100 + 3 * np.arange(len(x), dtype=np.int64)
    index = VectorIndex(x.shape[1], metric, clustering)
    index.upsert(ids, x)
    buckets = np.random.default_rng(5).permutation(len(x)) * 1000 // len(x)
    payloads = PayloadIndex.build(
        {"bucket": "integer"},
        [(int(i), {"bucket": int(b)}) for i, b in zip(ids, buckets, strict=True)],
    )
    return index, payloads, ids


def learned_style(index: VectorIndex) -> Router:
    """A linear router that is not the centroids (perturbed rows, a bias), as training gives."""
    clustering = index.clustering
    assert clustering is not None
    rng = np.random.default_rng(2)
    reps = clustering.representatives
    weights = reps + 0.1 * rng.standard_normal(reps.shape).astype(np.float32) * reps.std()
    bias = 0.1 * rng.standard_normal(clustering.nlist).astype(np.float32)
    return Router(RouterKind.LINEAR, weights, bias, clustering.version, version=1)


def check(
    index: VectorIndex,
    payloads: PayloadIndex,
    x: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    metric: Metric,
) -> None:
    """Exact plans are exact; IVF plans keep (within noise) the recall of unfiltered search at
    the base nprobe, the planner's premise; every plan returns min(k, matches) hits."""
    routers = [None, learned_style(index)]
    _, unfiltered_expected = brute_force(x, ids, queries, K, metric)
    baseline = {
        id(r): recall_at_k(
            index.search(queries, K, nprobe=NPROBE, router=r).ids, unfiltered_expected, K
        )
        for r in routers
    }
    for selectivity in SELECTIVITIES:
        f = parse_filter({"must": [{"key": "bucket", "range": {"lt": 1000 * selectivity}}]})
        mask = payloads.matching(f)
        allowed = AllowedIds.from_mask(mask)
        rows = np.flatnonzero(mask[ids])
        assert allowed.count == len(rows) > 0
        _, expected = brute_force(x[rows], ids[rows], queries, K, metric)
        for router in routers:
            for plan in (None, Plan.EXACT, Plan.IVF):
                out = filtered_search(
                    index, queries, K, allowed, nprobe=NPROBE, router=router, plan=plan
                )
                got = out.result.ids
                hits = (got >= 0).sum(axis=1)
                assert (hits == min(K, len(rows))).all(), (selectivity, plan)
                assert np.isin(got[got >= 0], ids[rows]).all()
                found = np.where(got >= 0, got, ids[rows][0])
                scores = true_scores(x[rows], ids[rows], queries, found, metric)
                valid = got >= 0
                np.testing.assert_allclose(out.result.scores[valid], scores[valid], atol=1e-4)
                recall = recall_at_k(got, expected, min(K, len(rows)))
                if out.plan is Plan.EXACT:
                    assert out.nprobe is None and recall > 0.99
                else:
                    assert out.nprobe is not None and out.nprobe >= NPROBE
                    assert recall >= baseline[id(router)] - 0.05, (selectivity, recall)


@pytest.mark.parametrize("metric", [Metric.IP, Metric.L2])
def test_every_plan_on_random_data(
    metric: Metric, random_vectors: np.ndarray, random_queries: np.ndarray
) -> None:
    index, payloads, ids = build(random_vectors, metric)
    check(index, payloads, random_vectors, ids, random_queries, metric)


def test_every_plan_on_debian(debian_cos: Dataset) -> None:
    index, payloads, ids = build(debian_cos.docs, Metric.COSINE)
    check(index, payloads, debian_cos.docs, ids, debian_cos.test_queries[:50], Metric.COSINE)


def test_plan_choice() -> None:
    assert choose_plan(100_000, 100_000, 8, 1000) == (Plan.IVF, 8)
    assert choose_plan(50_000, 100_000, 8, 1000) == (Plan.IVF, 8)
    assert choose_plan(25_000, 100_000, 100, 1000) == (Plan.IVF, 165)
    assert choose_plan(10_000, 100_000, 100, 1000) == (Plan.IVF, 319)
    assert choose_plan(1_000, 100_000, 100, 1000) == (Plan.EXACT, 1000)
    assert choose_plan(0, 100_000, 8, 1000) == (Plan.EXACT, 1000)
    assert choose_plan(500, 1000, 8, None) == (Plan.EXACT, 1)


def test_no_match_and_flat_index(random_vectors: np.ndarray) -> None:
    index = VectorIndex(32, Metric.IP)
    index.upsert(np.arange(50), random_vectors[:50])
    mask = np.zeros(50, dtype=bool)
    out = filtered_search(index, random_vectors[:3], K, AllowedIds.from_mask(mask), nprobe=4)
    assert out.plan is Plan.EXACT and (out.result.ids == -1).all()
    mask[[3, 7]] = True
    out = filtered_search(
        index, random_vectors[:3], K, AllowedIds.from_mask(mask), nprobe=4, plan=Plan.IVF
    )
    assert out.plan is Plan.EXACT
    assert sorted(out.result.ids[0, :2].tolist()) == [3, 7] and (out.result.ids[:, 2:] == -1).all()


def test_widening_finds_k_hits_when_the_matches_sit_in_far_lists(
    random_vectors: np.ndarray, random_queries: np.ndarray
) -> None:
    """A filter correlated with the vectors defeats the selectivity estimate: only the lists
    the query ranks last hold matches, so the first probes find nothing and nprobe widens."""
    index, _, ids = build(random_vectors, Metric.IP)
    clustering = index.clustering
    assert clustering is not None
    query = random_queries[:1]
    ranking = clustering.representatives @ query[0]
    far_lists = np.argsort(ranking)[: NLIST // 2]
    lists_of = clustering.assign(prepare(random_vectors, Metric.IP))
    rows = np.flatnonzero(np.isin(lists_of, far_lists))
    mask = np.zeros(ids.max() + 1, dtype=bool)
    mask[ids[rows]] = True
    out = filtered_search(index, query, K, AllowedIds.from_mask(mask), nprobe=NPROBE)
    assert out.plan is Plan.IVF and out.nprobe is not None and out.nprobe > 2 * NPROBE
    assert (out.result.ids >= 0).sum() == K and np.isin(out.result.ids, ids[rows]).all()
