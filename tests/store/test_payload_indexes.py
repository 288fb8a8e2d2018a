"""Declared payload indexes are stored with the collection and bump the write seq."""

from __future__ import annotations

from app.store.collections import create_collection, get_collection, set_payload_indexes
from app.store.db import Store


def test_declare_replace_and_clear(store: Store) -> None:
    created = create_collection(
        store,
        name="docs",
        dim=2,
        metric="ip",
        nlist=None,
        algorithm="kmeans",
        payload_indexes={"lang": "keyword"},
    )
    assert created is not None and created.payload_indexes == {"lang": "keyword"}
    seq = set_payload_indexes(store, "docs", {"year": "integer", "ok": "bool"})
    assert seq is not None and seq > created.seq
    with store.read() as s:
        record = get_collection(s, "docs")
    assert record is not None and record.seq == seq
    assert record.payload_indexes == {"year": "integer", "ok": "bool"}
    assert set_payload_indexes(store, "docs", {}) is not None
    with store.read() as s:
        cleared = get_collection(s, "docs")
    assert cleared is not None and cleared.payload_indexes == {}
    assert set_payload_indexes(store, "nope", {}) is None
