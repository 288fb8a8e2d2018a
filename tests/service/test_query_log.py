"""The query-log buffer: searches append, a flush writes them; a collection deleted while its
queries wait costs only its own queries."""

from __future__ import annotations

import numpy as np

from app.service.query_log import QueryLogBuffer
from app.store.collections import create_collection, delete_collection
from app.store.db import Store
from app.store.query_log import count_by_collection


def test_queries_of_a_deleted_collection_go_and_the_others_are_written(store: Store) -> None:
    kept, gone = (
        create_collection(store, name=name, dim=4, metric="ip", nlist=None, algorithm="kmeans")
        for name in ("kept", "gone")
    )
    assert kept is not None and gone is not None
    buffer = QueryLogBuffer(store, max_buffer=100, flush_s=3600)
    rng = np.random.default_rng(0)
    buffer.add(kept.id, rng.standard_normal((3, 4)).astype(np.float32), 10)
    buffer.add(gone.id, rng.standard_normal((2, 4)).astype(np.float32), 10)
    buffer.add(kept.id, rng.standard_normal((1, 4)).astype(np.float32), 5)
    assert delete_collection(store, "gone") is not None
    assert buffer.flush() == 6
    with store.read() as session:
        assert count_by_collection(session) == {kept.id: 4}
    assert buffer.pending == 0 and buffer.dropped == 0
