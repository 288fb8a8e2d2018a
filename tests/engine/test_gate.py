"""The gate's fast path equals IVF search; it refuses worse routers; adaptive reaches its recall."""

import json

import numpy as np
import pytest

from app.engine import gate
from app.engine.clustering import Algorithm, Clustering, train_clustering
from app.engine.evaluation import recall_at_k, top1_accuracy
from app.engine.labels import list_labels
from app.engine.routing import AdaptiveRule, Router, RouterKind, centroid_router
from app.engine.training import TrainConfig, train_router
from bench import debian


@pytest.fixture(scope="module")
def world() -> tuple[debian.Dataset, Clustering, np.ndarray, Router]:
    ds = debian.load("ip", n_docs=5000, n_train=3000, n_test=500)
    clustering = train_clustering(ds.docs, 64, Algorithm.KMEANS, ds.metric, seed=0)
    doc_lists = clustering.assign(ds.docs)
    config = TrainConfig(epochs=15, patience=3, batch_size=256)
    router = train_router(ds.train_queries, list_labels(ds.train_gt, doc_lists), clustering, config)
    return ds, clustering, doc_lists, router


def scan(
    docs: np.ndarray, doc_lists: np.ndarray, queries: np.ndarray, probed: np.ndarray
) -> np.ndarray:
    """IVF-Flat oracle: exact top-10 within the probed lists (-1 padding is skipped)."""
    found = np.full((len(queries), 10), -1, dtype=np.int64)
    for i, lists in enumerate(probed):
        cand = np.flatnonzero(np.isin(doc_lists, lists[lists >= 0]))
        top = cand[np.argsort(-(docs[cand] @ queries[i]), kind="stable")[:10]]
        found[i, : len(top)] = top
    return found


def test_fast_path_equals_ivf_search(world) -> None:
    ds, clustering, doc_lists, router = world
    report = gate.evaluate(
        router,
        ds.test_queries,
        list_labels(ds.test_gt, doc_lists),
        nprobes=(1, 4),
        list_sizes=np.bincount(doc_lists, minlength=clustering.nlist),
    )
    for i, nprobe in enumerate((1, 4)):
        probed = router.route(ds.test_queries, nprobe)
        found = scan(ds.docs, doc_lists, ds.test_queries, probed)
        assert report.recall[i] == pytest.approx(recall_at_k(found, ds.test_gt, 10), abs=2e-3)
        assert report.top1_accuracy[i] == pytest.approx(top1_accuracy(found, ds.test_gt), abs=2e-3)
        scanned = np.mean([np.isin(doc_lists, lists).sum() for lists in probed])
        assert report.mean_docs_scanned is not None
        assert report.mean_docs_scanned[i] == pytest.approx(scanned)
    need = report.nprobe_for_recall["0.90"]
    assert need is not None
    curve = gate.evaluate(
        router, ds.test_queries, list_labels(ds.test_gt, doc_lists), nprobes=(need - 1, need)
    )
    assert curve.recall[0] < 0.90 <= curve.recall[1]


def test_gate_accepts_a_better_router_and_refuses_a_worse_one(world) -> None:
    ds, clustering, doc_lists, router = world
    labels = list_labels(ds.test_gt, doc_lists)
    baseline = centroid_router(clustering)
    better = gate.compare(baseline, router, ds.test_queries, labels, default_nprobe=2)
    worse = gate.compare(router, baseline, ds.test_queries, labels, default_nprobe=2)
    same = gate.compare(router, router, ds.test_queries, labels, default_nprobe=2)
    assert better.activate and better.recall_diff[1] > better.recall_noise[1]
    assert not worse.activate and "no win" in worse.reason
    assert not same.activate
    json.dumps(better.to_dict())


def test_gate_refuses_a_router_that_wins_at_default_but_loses_elsewhere(world) -> None:
    ds, clustering, doc_lists, router = world
    labels = list_labels(ds.test_gt, doc_lists)
    # Keep the learnt top choice but rank every other list at random: wins at nprobe 1 only.
    noise = np.random.default_rng(0).standard_normal(router.weights.shape).astype(np.float32)
    spoiled = Router(RouterKind.LINEAR, router.weights + 0.5 * noise, None, 0)
    result = gate.compare(centroid_router(clustering), spoiled, ds.test_queries, labels, 1)
    assert not result.activate


def test_adaptive_routing_reaches_its_calibrated_recall(world) -> None:
    ds, _, doc_lists, router = world
    labels = list_labels(ds.test_gt, doc_lists)
    calib_q, calib_l, check_q = ds.test_queries[:300], labels[:300], ds.test_queries[300:]
    cal = gate.calibrate_adaptive(router, calib_q, calib_l, 0.9, max_nprobe=32)
    probed = cal.router.route_adaptive(calib_q, cal.level, 32)
    found = scan(ds.docs, doc_lists, calib_q, probed)
    assert recall_at_k(found, ds.test_gt[:300], 10) >= 0.9 - 2e-3
    assert (probed >= 0).sum(axis=1).mean() == pytest.approx(cal.mean_probes)
    held_out = scan(ds.docs, doc_lists, check_q, cal.router.route_adaptive(check_q, cal.level, 32))
    assert recall_at_k(held_out, ds.test_gt[300:], 10) == pytest.approx(0.9, abs=0.04)
    json.dumps(cal.to_dict())


def test_threshold_rule_reaches_its_calibrated_recall_with_fewer_probes_than_mass(world) -> None:
    ds, _, doc_lists, router = world
    labels = list_labels(ds.test_gt, doc_lists)
    calib_q, calib_l = ds.test_queries[:300], labels[:300]
    mass = gate.calibrate_adaptive(router, calib_q, calib_l, 0.9, max_nprobe=32)
    cal = gate.calibrate_adaptive(
        router, calib_q, calib_l, 0.9, max_nprobe=32, rule=AdaptiveRule.THRESHOLD
    )
    probed = cal.router.route_adaptive(calib_q, cal.level, 32, rule=cal.rule)
    found = scan(ds.docs, doc_lists, calib_q, probed)
    assert recall_at_k(found, ds.test_gt[:300], 10) >= 0.9 - 2e-3
    assert (probed >= 0).sum(axis=1).mean() == pytest.approx(cal.mean_probes)
    assert cal.mean_probes <= mass.mean_probes
    json.dumps(cal.to_dict())


def test_a_margin_buys_calibration_recall_above_the_target(world) -> None:
    ds, _, doc_lists, router = world
    labels = list_labels(ds.test_gt, doc_lists)[:300]
    plain = gate.calibrate_adaptive(
        router, ds.test_queries[:300], labels, 0.9, 32, rule=AdaptiveRule.THRESHOLD
    )
    safe = gate.calibrate_adaptive(
        router, ds.test_queries[:300], labels, 0.9, 32, rule=AdaptiveRule.THRESHOLD, margin_se=1
    )
    assert safe.recall > plain.recall >= 0.9
    assert safe.mean_probes > plain.mean_probes
