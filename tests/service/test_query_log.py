"""The query-log buffer: searches append, a flush writes them; a collection deleted while its
queries wait costs only its own queries."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from sqlalchemy.exc import OperationalError

from app.service import query_log as query_log_module
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


def _make(store: Store, max_buffer: int = 100) -> tuple[int, QueryLogBuffer]:
    record = create_collection(
        store, name="docs", dim=4, metric="ip", nlist=None, algorithm="kmeans"
    )
    assert record is not None
    return record.id, QueryLogBuffer(store, max_buffer=max_buffer, flush_s=3600)


def _queries(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def _stored(store: Store) -> int:
    with store.read() as session:
        return sum(count_by_collection(session).values())


def test_a_flush_returns_only_once_a_concurrent_flush_has_stored_its_queries(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, buffer = _make(store)
    writing, release = threading.Event(), threading.Event()
    real = query_log_module.append_queries

    def slow_append(s: Store, batch: list[Any]) -> None:
        writing.set()
        release.wait()
        real(s, batch)

    monkeypatch.setattr(query_log_module, "append_queries", slow_append)
    buffer.add(cid, _queries(5), 10)
    background = threading.Thread(target=buffer.flush, daemon=True)
    background.start()
    writing.wait()  # the background flush holds all 5 queries, not yet stored
    returned = threading.Event()
    caller = threading.Thread(target=lambda: (buffer.flush(), returned.set()), daemon=True)
    caller.start()
    try:
        # The caller's flush must wait for the background one; give it time to return early.
        early = returned.wait(0.5)
    finally:
        release.set()
    assert not early, "flush returned while queries added before it were unstored"
    caller.join()
    background.join()
    assert _stored(store) == 5 and buffer.pending == 0


def test_an_outage_keeps_the_batch_without_evicting_newer_queries(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, buffer = _make(store, max_buffer=4)
    real = query_log_module.append_queries
    calls = 0

    def down_once(s: Store, batch: list[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            buffer.add(cid, _queries(4, seed=1), 10)  # searches go on during the write
            raise OperationalError("INSERT", {}, ConnectionError("store down"))
        real(s, batch)

    monkeypatch.setattr(query_log_module, "append_queries", down_once)
    buffer.add(cid, _queries(4), 10)
    with pytest.raises(OperationalError):
        buffer.flush()
    assert buffer.pending == 8 and buffer.dropped == 0
    assert buffer.flush() == 8
    assert _stored(store) == 8 and buffer.pending == 0 and buffer.dropped == 0


def test_a_batch_lost_to_an_unexpected_error_is_counted_as_dropped(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, buffer = _make(store)

    def broken(s: Store, batch: list[Any]) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(query_log_module, "append_queries", broken)
    buffer.add(cid, _queries(3), 10)
    with pytest.raises(ValueError):
        buffer.flush()
    assert buffer.dropped == 3 and buffer.pending == 0
