"""Payload indexes survive a restart (snapshot + change feed) and follow writes of replicas."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.engine.filters import parse_filter
from app.service.search import SearchOptions
from app.service.service import Service
from tests.service.services import create_docs, start_service

FILTER = parse_filter(
    {
        "must": [{"key": "bucket", "range": {"lt": 30}}],
        "must_not": [{"key": "lang", "match": {"value": "de"}}],
    }
)


def _points(rng: np.random.Generator, start: int, n: int) -> list[dict]:
    x = rng.standard_normal((n, 8))
    return [
        {
            "id": f"p{start + i}",
            "vector": v.tolist(),
            "payload": {"bucket": int(rng.integers(0, 100)), "lang": str(rng.choice(["en", "de"]))},
        }
        for i, v in enumerate(x)
    ]


def _search(service: Service, queries: np.ndarray) -> dict:
    opts = SearchOptions(k=5, nprobe=None, routing="exact", with_payload=True, filter=FILTER)
    out = service.search("docs", queries, opts)
    out.pop("engine_seconds")  # the engine's time, different at every call
    return out


def test_restart_and_replica_keep_payload_indexes(database_url: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    queries = rng.standard_normal((10, 8)).astype(np.float32)
    first = start_service(database_url, tmp_path / "a")
    replica = start_service(database_url, tmp_path / "r")
    create_docs(first, {"bucket": "integer"})
    first.index_points("docs", _points(rng, 0, 200))
    replica.registry.catch_up()  # the replica then follows the changes below one by one
    assert replica.registry.get("docs").payloads.count == 200
    assert first.runtime.snapshot_all(force=True) == 1
    snap = tmp_path / "a" / "snapshots" / "docs.snap"
    old_snapshot = snap.read_bytes()
    # after the snapshot: replaced payloads, deletions, a new declaration
    first.index_points("docs", _points(rng, 150, 100))
    first.delete_points("docs", [f"p{i}" for i in range(0, 40)])
    first.set_payload_indexes("docs", {"bucket": "integer", "lang": "keyword"})
    expected = _search(first, queries)
    assert expected["matches"] > 10 and all(len(r) == 5 for r in expected["results"])
    for hits in expected["results"]:
        assert all(h["payload"]["bucket"] < 30 and h["payload"]["lang"] != "de" for h in hits)

    replica.registry.catch_up()
    live = replica.registry.get("docs")
    assert live.payloads.fields == {"bucket": "integer", "lang": "keyword"}
    assert _search(replica, queries) == expected
    replica.stop()

    first.stop()
    snap.write_bytes(old_snapshot)
    restarted = start_service(database_url, tmp_path / "a")
    try:
        assert restarted.get_collection("docs")["payload_indexes"] == {
            "bucket": "integer",
            "lang": "keyword",
        }
        assert _search(restarted, queries) == expected
    finally:
        restarted.stop()
