"""Trained routers beat centroid routing on held-out queries, deterministically, without torch."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from app.engine import gate
from app.engine.clustering import Algorithm, Clustering, train_clustering
from app.engine.evaluation import recall_at_k, top1_accuracy
from app.engine.labels import Objective, exact_neighbours, exact_search, list_labels
from app.engine.metric import Metric, prepare
from app.engine.routing import CentroidRule, Router, RouterKind, centroid_router
from app.engine.training import TrainConfig, train_router
from bench import debian

NLIST = 64
FAST = TrainConfig(epochs=15, patience=3, batch_size=256)


@pytest.fixture(scope="module")
def world() -> tuple[debian.Dataset, Clustering, np.ndarray]:
    ds = debian.load("ip", n_docs=5000, n_train=3000, n_test=500)
    clustering = train_clustering(ds.docs, NLIST, Algorithm.KMEANS, ds.metric, seed=0)
    return ds, clustering, clustering.assign(ds.docs)


def ivf_search(
    router: Router,
    docs: np.ndarray,
    doc_lists: np.ndarray,
    queries: np.ndarray,
    nprobe: int,
    k: int,
) -> np.ndarray:
    """Exact scan of the probed lists only: the IVF-Flat oracle."""
    probed = router.route(queries, nprobe)
    found = np.full((len(queries), k), -1, dtype=np.int64)
    for i, lists in enumerate(probed):
        cand = np.flatnonzero(np.isin(doc_lists, lists))
        top = cand[np.argsort(-(docs[cand] @ queries[i]), kind="stable")[:k]]
        found[i, : len(top)] = top
    return found


def test_linear_router_beats_centroid_routing_on_held_out_queries(world) -> None:
    ds, clustering, doc_lists = world
    router = train_router(ds.train_queries, list_labels(ds.train_gt, doc_lists), clustering, FAST)
    assert router.kind is RouterKind.LINEAR and router.bias is None
    baselines = [centroid_router(clustering, rule) for rule in CentroidRule]
    for nprobe in (1, 2):
        learned = ivf_search(router, ds.docs, doc_lists, ds.test_queries, nprobe, 10)
        best_top1 = max(
            top1_accuracy(
                ivf_search(b, ds.docs, doc_lists, ds.test_queries, nprobe, 10), ds.test_gt
            )
            for b in baselines
        )
        best_recall = max(
            recall_at_k(
                ivf_search(b, ds.docs, doc_lists, ds.test_queries, nprobe, 10), ds.test_gt, 10
            )
            for b in baselines
        )
        # 500 queries: the standard error of top-1 is ~0.02, of recall@10 (5000 pairs) ~0.007
        assert top1_accuracy(learned, ds.test_gt) > best_top1 + 0.08
        assert recall_at_k(learned, ds.test_gt, 10) > best_recall + 0.015


def test_training_is_deterministic_for_a_seed(world) -> None:
    ds, clustering, doc_lists = world
    labels = list_labels(ds.train_gt, doc_lists)
    config = TrainConfig(epochs=2, patience=5, seed=11)
    a = train_router(ds.train_queries, labels, clustering, config)
    b = train_router(ds.train_queries, labels, clustering, config)
    c = train_router(ds.train_queries, labels, clustering, TrainConfig(epochs=2, seed=12))
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.temperature == b.temperature
    assert not np.array_equal(a.weights, c.weights)


def test_router_stores_hyperparameters_and_reports_progress(world) -> None:
    ds, clustering, doc_lists = world
    seen: list[float] = []
    config = TrainConfig(kind=RouterKind.MLP, objective=Objective.TOPK, epochs=3, hidden=32)
    router = train_router(
        ds.train_queries, list_labels(ds.train_gt, doc_lists), clustering, config, seen.append
    )
    assert router.mlp is not None and router.mlp.hidden_weights.shape == (32, clustering.dim)
    assert seen == sorted(seen) and seen[-1] == 1.0
    params = json.loads(json.dumps(router.params))
    assert params["config"]["kind"] == "mlp" and params["config"]["objective"] == "topk"
    assert_not_worse_than_start(params["stats"])


@pytest.mark.parametrize("metric", list(Metric))
@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_training_never_ends_worse_than_its_centroid_start(
    metric: Metric, algorithm: Algorithm
) -> None:
    rng = np.random.default_rng(5)
    docs = prepare(rng.standard_normal((1500, 16)).astype(np.float32) + 0.3, metric)
    queries = prepare(rng.standard_normal((600, 16)).astype(np.float32) + 0.3, metric)
    clustering = train_clustering(docs, 12, algorithm, metric, seed=1, niter=5)
    labels = list_labels(exact_neighbours(docs, queries, 5, metric), clustering.assign(docs))
    config = TrainConfig(objective=Objective.MIXED, k=5, epochs=4, bias=True)
    router = train_router(queries, labels, clustering, config)
    stats = router.params["stats"]
    assert router.bias is not None and router.nlist == 12
    assert_not_worse_than_start(stats)


@pytest.mark.parametrize("select", ["mrr", "top1", "loss"])
def test_the_returned_epoch_is_the_best_by_the_selection_score(world, select: str) -> None:
    ds, clustering, doc_lists = world
    config = TrainConfig(epochs=6, patience=2, select=select, refit=False)
    router = train_router(ds.train_queries, list_labels(ds.train_gt, doc_lists), clustering, config)
    stats = router.params["stats"]
    assert stats["select"] == select
    assert_not_worse_than_start(stats)
    column = {"loss": 1, "top1": 2, "mrr": 3}[select]
    scores = [row[column] for row in stats["history"]]
    best = min(scores) if select == "loss" else max(scores)
    assert stats[f"best_val_{select}"] == pytest.approx(best, abs=2e-4) or stats["best_epoch"] == 0
    if stats["best_epoch"] > 0:
        assert stats["history"][stats["best_epoch"] - 1][column] == stats[f"best_val_{select}"]


def test_config_rejects_unknown_selection_and_bad_dropout() -> None:
    with pytest.raises(ValueError):
        TrainConfig(select="accuracy")
    with pytest.raises(ValueError):
        TrainConfig(dropout=1.0)


def assert_not_worse_than_start(stats: dict) -> None:
    """The returned parameters are never worse than the centroid start on the chosen score."""
    select = stats["select"]
    if select == "loss":
        assert stats["best_val_loss"] <= stats["initial_val_loss"]
    else:
        assert stats[f"best_val_{select}"] >= stats[f"initial_val_{select}"]


def test_serving_a_router_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "import app.engine.routing as r, app.engine.gate, app.engine.labels\n"
        "x = r.Router(r.RouterKind.LINEAR, np.eye(3), None, clustering_version=0)\n"
        "x.route(np.ones((2, 3)), 2)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_refit_retrains_on_every_query_for_the_selected_number_of_epochs(world) -> None:
    ds, clustering, doc_lists = world
    labels = list_labels(ds.train_gt, doc_lists)
    seen: list[float] = []
    config = TrainConfig(epochs=4, patience=2, refit=True)
    refit = train_router(ds.train_queries, labels, clustering, config, seen.append)
    again = train_router(ds.train_queries, labels, clustering, config)
    selected = train_router(ds.train_queries, labels, clustering, replace(config, refit=False))
    stats = refit.params["stats"]
    assert stats["best_epoch"] > 0, "on this data training improves on the centroid start"
    assert stats["refit_epochs"] == stats["best_epoch"]
    assert stats["n_refit"] == len(ds.train_queries) == stats["n_train"] + stats["n_val"]
    assert seen == sorted(seen) and seen[-1] == 1.0
    np.testing.assert_array_equal(refit.weights, again.weights)
    assert not np.array_equal(refit.weights, selected.weights)
    assert selected.params["stats"]["refit_epochs"] == 0


def test_graded_objective_trains_on_exact_scores_and_beats_centroid_routing(world) -> None:
    ds, clustering, doc_lists = world
    ids, scores = exact_search(ds.docs, ds.train_queries, 10, ds.metric)
    labels = list_labels(ids, doc_lists)
    config = replace(FAST, objective=Objective.GRADED)
    with pytest.raises(ValueError, match="exact scores"):
        train_router(ds.train_queries, labels, clustering, config)
    router = train_router(ds.train_queries, labels, clustering, config, neighbour_scores=scores)
    test_lists = list_labels(ds.test_gt, doc_lists)
    learned = gate.evaluate(router, ds.test_queries, test_lists, nprobes=(1, 2))
    for rule in CentroidRule:
        base = gate.evaluate(
            centroid_router(clustering, rule), ds.test_queries, test_lists, nprobes=(1, 2)
        )
        # 500 queries: the standard error of top-1 is ~0.02, of recall@10 ~0.007
        assert learned.top1_accuracy[0] > base.top1_accuracy[0] + 0.08
        assert learned.recall[1] > base.recall[1] + 0.015
