"""A search's queries are logged apart from the search (the API does so once it has sent the
answer), for the collection's id; a collection dropped in between logs nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.service.services import create_docs, start_service


def test_queries_are_logged_for_their_collection_unless_it_was_dropped(tmp_path: Path) -> None:
    # No flush while the test reads the buffer.
    service = start_service(f"sqlite:///{tmp_path / 'store.db'}", tmp_path, query_log_flush_s=3600)
    try:
        create_docs(service, {})
        collection_id = service.registry.get("docs").record.id
        queries = np.ones((2, 8), dtype=np.float32)
        service.log_queries("docs", queries, 5)
        queries[:] = 0  # the caller may reuse its array: the log holds a copy
        service.delete_collection("docs")
        service.log_queries("docs", queries, 5)  # dropped meanwhile: nothing, no error
        logged = list(service.query_log._buffer)
        assert [(q.collection_id, q.k) for q in logged] == [(collection_id, 5)] * 2
        assert all(np.array_equal(q.vector, np.ones(8)) for q in logged)
    finally:
        service.stop()
