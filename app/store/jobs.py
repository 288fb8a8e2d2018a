"""Jobs: a durable queue with leases, for the worker (and the API's embedded worker).

A worker claims a job, which sets a lease; it renews the lease with ``heartbeat`` while it
works. A job whose lease expired (its worker died) is claimable again, until it has been
attempted ``max_attempts`` times, after which it is failed. On PostgreSQL the claim uses
``SELECT ... FOR UPDATE SKIP LOCKED`` so that concurrent workers never wait on, or take,
the same job; on SQLite one conditional UPDATE does it (SQLite has a single writer anyway).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.store.db import Store
from app.store.models import JobRow, as_utc

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
PENDING = (QUEUED, RUNNING)


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str
    collection: str | None
    params: dict[str, Any]
    status: str
    progress: float
    result: Any
    error: str | None
    attempts: int
    max_attempts: int
    worker_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: JobRow) -> JobRecord:
        return cls(
            id=row.id,
            kind=row.kind,
            collection=row.collection,
            params=dict(row.params or {}),
            status=row.status,
            progress=row.progress,
            result=row.result,
            error=row.error,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            worker_id=row.worker_id,
            created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at),
        )


def _now() -> datetime:
    return datetime.now(UTC)


def enqueue(
    store: Store,
    kind: str,
    collection: str | None,
    params: dict[str, Any] | None = None,
    *,
    max_attempts: int = 3,
) -> JobRecord:
    now = _now()
    with store.write() as session:
        row = JobRow(
            id=str(uuid.uuid4()),
            kind=kind,
            collection=collection,
            params=params or {},
            status=QUEUED,
            progress=0.0,
            attempts=0,
            max_attempts=max_attempts,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return JobRecord.of(row)


def get_job(store: Store, job_id: str) -> JobRecord | None:
    with store.read() as session:
        row = session.get(JobRow, job_id)
        return JobRecord.of(row) if row else None


def list_jobs(
    session: Session, *, collection: str | None, status: str | None, limit: int
) -> list[JobRecord]:
    """The newest ``limit`` jobs, newest first, optionally of one collection and status."""
    stmt = select(JobRow)
    if collection is not None:
        stmt = stmt.where(JobRow.collection == collection)
    if status is not None:
        stmt = stmt.where(JobRow.status == status)
    stmt = stmt.order_by(JobRow.created_at.desc(), JobRow.id).limit(limit)
    return [JobRecord.of(r) for r in session.execute(stmt).scalars()]


def pending_jobs(session: Session, collection: str, kind: str | None = None) -> list[JobRecord]:
    """Queued or running jobs of a collection (to avoid enqueueing duplicates)."""
    stmt = select(JobRow).where(JobRow.collection == collection, JobRow.status.in_(PENDING))
    if kind is not None:
        stmt = stmt.where(JobRow.kind == kind)
    return [JobRecord.of(r) for r in session.execute(stmt).scalars()]


def latest_job(session: Session, collection: str, kind: str) -> JobRecord | None:
    """The newest job of ``kind`` for a collection, whatever its status."""
    stmt = (
        select(JobRow)
        .where(JobRow.collection == collection, JobRow.kind == kind)
        .order_by(JobRow.created_at.desc(), JobRow.id)
        .limit(1)
    )
    row = session.execute(stmt).scalar_one_or_none()
    return JobRecord.of(row) if row else None


def claim(
    store: Store, worker_id: str, kinds: Sequence[str], *, lease_s: float
) -> JobRecord | None:
    """Take the oldest claimable job of one of ``kinds``, or None."""
    now = _now()
    with store.write() as session:
        _fail_exhausted(session, now)
        claimable = (
            select(JobRow.id)
            .where(
                JobRow.kind.in_(list(kinds)),
                (JobRow.status == QUEUED)
                | ((JobRow.status == RUNNING) & (JobRow.lease_until < now)),
                JobRow.attempts < JobRow.max_attempts,
            )
            .order_by(JobRow.created_at)
            .limit(1)
        )
        if not store.sqlite:
            job_id = session.execute(claimable.with_for_update(skip_locked=True)).scalar()
            if job_id is None:
                return None
            target = JobRow.id == job_id
        else:
            target = JobRow.id == claimable.scalar_subquery()
        row = session.execute(
            update(JobRow)
            .where(target)
            .values(
                status=RUNNING,
                attempts=JobRow.attempts + 1,
                worker_id=worker_id,
                lease_until=now + timedelta(seconds=lease_s),
                heartbeat_at=now,
                updated_at=now,
                error=None,
            )
            .returning(JobRow)
        ).scalar_one_or_none()
        return JobRecord.of(row) if row else None


def heartbeat(
    store: Store, job_id: str, worker_id: str, *, lease_s: float, progress: float | None = None
) -> bool:
    """Renew the lease (and report progress); False if the job is no longer ours."""
    now = _now()
    values: dict[str, Any] = {
        "lease_until": now + timedelta(seconds=lease_s),
        "heartbeat_at": now,
        "updated_at": now,
    }
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, progress))
    return _update_own(store, job_id, worker_id, values)


def finish(store: Store, job_id: str, worker_id: str, result: Any) -> bool:
    values = {"status": SUCCEEDED, "progress": 1.0, "result": result, "lease_until": None}
    return _update_own(store, job_id, worker_id, values | {"updated_at": _now()})


def fail(store: Store, job_id: str, worker_id: str, error: str, *, retry: bool = True) -> bool:
    """Record a failure: back to the queue while attempts remain (if ``retry``), else failed."""
    now = _now()
    with store.write() as session:
        row = session.get(JobRow, job_id, with_for_update=not store.sqlite)
        if row is None or row.worker_id != worker_id or row.status != RUNNING:
            return False
        again = retry and row.attempts < row.max_attempts
        row.status = QUEUED if again else FAILED
        row.error = error[:4000]
        row.lease_until = None
        row.updated_at = now
        return True


def _update_own(store: Store, job_id: str, worker_id: str, values: dict[str, Any]) -> bool:
    with store.write() as session:
        result = session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.worker_id == worker_id, JobRow.status == RUNNING)
            .values(**values)
            .returning(JobRow.id)
        )
        return result.first() is not None


def _fail_exhausted(session: Session, now: datetime) -> None:
    """Jobs whose worker died on their last attempt will never be claimed: fail them."""
    session.execute(
        update(JobRow)
        .where(
            JobRow.status == RUNNING,
            JobRow.lease_until < now,
            JobRow.attempts >= JobRow.max_attempts,
        )
        .values(status=FAILED, error="lease expired on the last attempt", updated_at=now)
    )


def collections_with_pending(session: Session, kind: str) -> set[str]:
    """Names of collections with a queued or running job of ``kind``."""
    stmt = select(JobRow.collection).where(JobRow.kind == kind, JobRow.status.in_(PENDING))
    return {c for c in session.execute(stmt).scalars() if c is not None}


def count_by_status(session: Session) -> dict[tuple[str, str], int]:
    """Jobs per (kind, status) over the whole store (the ``/metrics`` job outcomes)."""
    stmt = select(JobRow.kind, JobRow.status, func.count()).group_by(JobRow.kind, JobRow.status)
    return {(kind, status): int(n) for kind, status, n in session.execute(stmt)}
