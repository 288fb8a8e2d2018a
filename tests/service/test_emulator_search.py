"""``routing: "emulator"`` (paper 002): 409 before training; once trained, hits carry exact
scores, the exact top-k of the candidates; after deletes and inserts no deleted id comes
back and every new point is reachable, until the next training and after a restart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.service.errors import NoEmulator
from app.service.search import SearchOptions
from app.service.service import Service
from app.store.query_log import LoggedQuery, append_queries
from tests.engine.test_emulator import clustered
from tests.service.services import start_service
from worker.build import run_build
from worker.train_emulator import run_train_emulator
from worker.train_router import TrainingPlan

EMULATOR = SearchOptions(k=10, nprobe=3, routing="emulator", with_payload=False)
EXACT = SearchOptions(k=10, nprobe=None, routing="exact", with_payload=False)


def _ids(out: dict) -> list[list[str]]:
    return [[h["id"] for h in hits] for hits in out["results"]]


def _trained(database_url: str, tmp_path: Path) -> tuple[Service, np.ndarray, np.ndarray]:
    docs, queries = clustered(3, n_docs=1000, n_queries=700)
    service = start_service(database_url, tmp_path)
    service.create_collection(
        name="docs", dim=16, metric="l2", nlist=8, algorithm="kmeans", default_nprobe=None
    )
    service.index_points(
        "docs", [{"id": f"p{i}", "vector": v.tolist()} for i, v in enumerate(docs)]
    )
    run_build(service.store, "docs", {}, lambda _: None)
    service.registry.catch_up()
    with pytest.raises(NoEmulator):  # 409 before any emulator is trained
        service.search("docs", queries[:1], EMULATOR)
    cid = service.registry.get("docs").record.id
    append_queries(service.store, [LoggedQuery(cid, q, 10) for q in queries[:600]])
    progress: list[float] = []
    result = run_train_emulator(
        service.store, "docs", {}, progress.append, TrainingPlan(min_queries=100)
    )
    assert progress and progress == sorted(progress)
    assert result["level1_accuracy"] >= 0.88 and result["level2_top5_accuracy"] >= 0.95
    service.registry.catch_up()
    return service, docs, queries[600:]


def test_emulator_hits_have_exact_scores_and_survive_writes(
    database_url: str, tmp_path: Path
) -> None:
    service, docs, queries = _trained(database_url, tmp_path)
    try:
        out = service.search("docs", queries, EMULATOR)
        assert out["routing"] == "emulator" and out["router_version"] == 1
        assert out["nprobe"] == 3 and 0 < out["candidates"] <= 30 < out["scanned"]
        exact = service.search("docs", queries, EXACT)
        rows = {f"p{i}": i for i in range(len(docs))}
        for q, (hits, truth) in enumerate(zip(out["results"], exact["results"], strict=True)):
            found = np.array([rows[h["id"]] for h in hits])
            exact_scores = -((docs[found] - queries[q]) ** 2).sum(axis=1)
            np.testing.assert_allclose(
                [h["score"] for h in hits], exact_scores, rtol=1e-5, atol=1e-3
            )
            assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
            assert hits[0]["score"] <= truth[0]["score"] + 1e-4
        recall = np.mean(
            [len(set(a) & set(b)) / 10 for a, b in zip(_ids(out), _ids(exact), strict=True)]
        )
        assert recall >= 0.9

        # Delete every point the emulator returned first; insert new exact twins of queries.
        first = sorted({hits[0]["id"] for hits in out["results"]})
        service.delete_points("docs", first)
        twins = [{"id": f"new{i}", "vector": q.tolist()} for i, q in enumerate(queries[:20])]
        service.index_points("docs", twins)
        again = service.search("docs", queries, EMULATOR)
        returned = {h["id"] for hits in again["results"] for h in hits}
        assert not returned & set(first)
        # Each new twin is its query's exact nearest neighbour (distance 0): found first.
        assert [hits[0]["id"] for hits in again["results"][:20]] == [t["id"] for t in twins]
        assert again["results"][0][0]["score"] == pytest.approx(0.0, abs=1e-4)
    finally:
        service.stop()

    # A restart rebuilds the set of points the emulator never saw from the store.
    restarted = start_service(database_url, tmp_path)
    try:
        after = restarted.search("docs", queries, EMULATOR)
        assert [hits[0]["id"] for hits in after["results"][:20]] == [t["id"] for t in twins]
        assert not {h["id"] for hits in after["results"] for h in hits} & set(first)
    finally:
        restarted.stop()
