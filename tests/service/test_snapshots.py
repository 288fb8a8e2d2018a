"""Snapshots never outlive their collection: a snapshot taken while the collection is being
deleted is not published, and a new collection of the same name never loads an old one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.service.search import SearchOptions
from tests.service.services import create_docs, start_service


def _points(prefix: str, n: int, seed: int) -> list[dict]:
    x = np.random.default_rng(seed).standard_normal((n, 8))
    return [{"id": f"{prefix}{i}", "vector": v.tolist()} for i, v in enumerate(x)]


def test_a_snapshot_racing_a_delete_is_not_published_nor_loaded_by_a_successor(
    database_url: str, tmp_path: Path
) -> None:
    service = start_service(database_url, tmp_path)
    create_docs(service, {})
    service.index_points("docs", _points("old", 50, 0))
    old = service.registry.get("docs")
    meta = {"collection_id": old.record.id, "seq": service.registry.applied_seq}
    service.delete_collection("docs")
    # The snapshot loop picked the collection up before the delete and serialises it now.
    assert not service.registry.save_snapshot(old, meta)
    assert not (tmp_path / "snapshots" / "docs.snap").exists()

    create_docs(service, {})
    service.index_points("docs", _points("new", 20, 1))
    assert service.registry.get("docs").record.id != old.record.id
    service.stop()

    restarted = start_service(database_url, tmp_path)
    try:
        opts = SearchOptions(k=100, nprobe=None, routing="exact", with_payload=False)
        query = np.ones((1, 8), np.float32)
        hits = restarted.search("docs", query, opts)["results"][0]
        assert sorted(h["id"] for h in hits) == sorted(f"new{i}" for i in range(20))
    finally:
        restarted.stop()


def test_start_up_removes_staged_files_and_snapshots_of_unknown_collections(
    database_url: str, tmp_path: Path
) -> None:
    service = start_service(database_url, tmp_path)
    create_docs(service, {})
    service.index_points("docs", _points("p", 10, 0))
    assert service.runtime.snapshot_all(force=True) == 1
    service.stop()
    snapshots = tmp_path / "snapshots"
    (snapshots / "gone.snap").write_bytes(b"left by a collection deleted elsewhere")
    (snapshots / ".docs.0123.staged").write_bytes(b"left by a crash mid-write")

    restarted = start_service(database_url, tmp_path)
    try:
        assert sorted(p.name for p in snapshots.iterdir()) == ["docs.snap"]
        assert restarted.registry.get("docs").index.count == 10
    finally:
        restarted.stop()
