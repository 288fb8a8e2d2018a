"""A restart from snapshot + change feed gives the same results as a rebuild from the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.service.search import SearchOptions
from tests.service.services import start_service
from worker.build import run_build


def _points(rng: np.random.Generator, start: int, n: int) -> list[dict]:
    x = rng.standard_normal((n, 8))
    return [{"id": f"p{start + i}", "vector": v.tolist()} for i, v in enumerate(x)]


def test_snapshot_plus_catch_up_equals_rebuild(database_url: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    first = start_service(database_url, tmp_path / "a")
    first.create_collection(
        name="docs", dim=8, metric="l2", nlist=4, algorithm="kmeans", default_nprobe=2
    )
    first.index_points("docs", _points(rng, 0, 300))
    run_build(first.store, "docs", {}, lambda _: None)
    first.registry.catch_up()
    assert first.registry.get("docs").clustering_version == 1
    assert first.runtime.snapshot_all(force=True) == 1
    snap = tmp_path / "a" / "snapshots" / "docs.snap"
    old_snapshot = snap.read_bytes()
    # writes after the snapshot: the restart must pick them up from the change feed
    first.index_points("docs", _points(rng, 250, 100))  # 50 replaced, 50 new
    first.delete_points("docs", [f"p{i}" for i in range(0, 40)])
    first.stop()  # writes a fresh snapshot on shutdown; put the older one back
    assert snap.read_bytes() != old_snapshot
    snap.write_bytes(old_snapshot)

    from_snapshot = start_service(database_url, tmp_path / "a")
    rebuilt = start_service(database_url, tmp_path / "b")  # no snapshot there
    queries = rng.standard_normal((20, 8)).astype(np.float32)
    opts = SearchOptions(k=5, nprobe=2, routing="auto", with_payload=False)
    try:
        a = from_snapshot.search("docs", queries, opts)
        b = rebuilt.search("docs", queries, opts)
        assert from_snapshot.registry.get("docs").index.count == 310
        assert rebuilt.registry.get("docs").index.count == 310
        assert a.pop("engine_seconds") > 0 and b.pop("engine_seconds") > 0  # differ per call
        assert a == b and a["routing"] == "centroid"
    finally:
        from_snapshot.stop()
        rebuilt.stop()
