"""Store functions: write seq, atomic upserts, tombstones, the change feed, job leases."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.store import jobs
from app.store.collections import create_collection, delete_collection
from app.store.db import Store
from app.store.points import (
    WrongDimension,
    changes_since,
    delete_points,
    get_point,
    upsert_points,
)
from app.store.seq import current_seq, next_seq


def _upsert(store: Store, cid: int, ids: list[str], vectors: np.ndarray) -> tuple[int, np.ndarray]:
    with store.write() as session:
        seq = next_seq(session)
        return seq, upsert_points(session, cid, seq, ids, vectors, [None] * len(ids))


def test_points_upsert_replace_delete_and_change_feed(store: Store) -> None:
    c = create_collection(store, name="c", dim=2, metric="ip", nlist=None, algorithm="kmeans")
    assert c is not None and c.seq == 1
    seq1, ids1 = _upsert(store, c.id, ["a", "b"], np.array([[1, 0], [0, 1]], np.float32))
    seq2, ids2 = _upsert(store, c.id, ["a"], np.array([[2, 2]], np.float32))
    assert seq2 == seq1 + 1 and ids2[0] == ids1[0]  # replacing keeps the internal id
    with store.write() as session:
        seq3 = next_seq(session)
        removed = delete_points(session, c.id, seq3, ["b", "missing"])
    assert removed.tolist() == [ids1[1]]
    with store.read() as session:
        assert current_seq(session) == seq3
        point = get_point(session, c.id, "a", 2)
        assert point is not None and point.vector.tolist() == [2.0, 2.0]
        assert get_point(session, c.id, "b", 2) is None
        (change,) = changes_since(session, seq1, {c.id: 2})
    assert change.upsert_ids.tolist() == [ids1[0]]
    assert change.upsert_vectors.tolist() == [[2.0, 2.0]]
    assert change.removed_ids.tolist() == [ids1[1]]
    assert create_collection(store, name="c", dim=2, metric="ip", nlist=None, algorithm="x") is None
    assert delete_collection(store, "c") is not None
    assert delete_collection(store, "c") is None


def test_concurrent_writers_get_distinct_ordered_seqs(store: Store) -> None:
    seen: list[int] = []

    def write() -> None:
        for _ in range(10):
            with store.write() as session:
                seen.append(next_seq(session))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 41))


def test_job_claim_heartbeat_finish(store: Store) -> None:
    job = jobs.enqueue(store, "build", "c", {"nlist": 4})
    assert jobs.claim(store, "w1", ["train-router"], lease_s=10) is None
    claimed = jobs.claim(store, "w1", ["build"], lease_s=10)
    assert claimed is not None and claimed.id == job.id and claimed.attempts == 1
    assert jobs.claim(store, "w2", ["build"], lease_s=10) is None  # leased
    assert jobs.heartbeat(store, job.id, "w1", lease_s=10, progress=0.5)
    assert not jobs.heartbeat(store, job.id, "w2", lease_s=10)
    assert jobs.finish(store, job.id, "w1", {"ok": True})
    done = jobs.get_job(store, job.id)
    assert done is not None and done.status == "succeeded" and done.result == {"ok": True}


def test_expired_lease_is_reclaimed_until_attempts_run_out(store: Store) -> None:
    # A lease that ran out a second ago: its worker died (no clock to wait for).
    expired = -1.0
    job = jobs.enqueue(store, "build", "c", max_attempts=2)
    assert jobs.claim(store, "w1", ["build"], lease_s=expired) is not None
    again = jobs.claim(store, "w2", ["build"], lease_s=expired)
    assert again is not None and again.attempts == 2 and again.worker_id == "w2"
    assert not jobs.finish(store, job.id, "w1", None)  # the first worker lost its lease
    assert jobs.claim(store, "w3", ["build"], lease_s=10) is None
    failed = jobs.get_job(store, job.id)
    assert failed is not None and failed.status == "failed"


def test_failure_requeues_then_fails(store: Store) -> None:
    job = jobs.enqueue(store, "build", "c", max_attempts=2)
    jobs.claim(store, "w", ["build"], lease_s=10)
    assert jobs.fail(store, job.id, "w", "boom")
    assert jobs.get_job(store, job.id).status == "queued"  # type: ignore[union-attr]
    jobs.claim(store, "w", ["build"], lease_s=10)
    assert jobs.fail(store, job.id, "w", "boom again")
    final = jobs.get_job(store, job.id)
    assert final is not None and final.status == "failed" and final.error == "boom again"


def test_concurrent_claims_never_share_a_job(store: Store) -> None:
    for _ in range(6):
        jobs.enqueue(store, "build", "c")
    claimed: list[str] = []

    def work(worker: str) -> None:
        while (job := jobs.claim(store, worker, ["build"], lease_s=30)) is not None:
            claimed.append(job.id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 6 and len(set(claimed)) == 6


def test_a_collection_id_is_never_reused_after_a_delete(store: Store) -> None:
    def create(name: str) -> int:
        record = create_collection(
            store, name=name, dim=2, metric="ip", nlist=None, algorithm="kmeans"
        )
        assert record is not None
        return record.id

    seen = {create("a"), create("b")}
    assert delete_collection(store, "b") is not None  # the newest row: SQLite would reuse it
    for name in ("b", "c"):
        new = create(name)
        assert new not in seen
        seen.add(new)


def test_a_batch_of_another_dimension_is_refused_by_the_store(store: Store) -> None:
    record = create_collection(
        store, name="docs", dim=4, metric="ip", nlist=None, algorithm="kmeans"
    )
    assert record is not None
    with pytest.raises(WrongDimension), store.write() as session:
        upsert_points(session, record.id, next_seq(session), ["a"], np.ones((1, 8)), [None])
    with store.read() as session:
        assert get_point(session, record.id, "a", 4) is None
