"""Read-only listings for people looking at their data (the console): pages of points, jobs.

Both read the store, the source of truth, so a listing shows what is durable even on a
replica that has not caught up yet.
"""

from __future__ import annotations

from typing import Any

from app.service.points import external_id
from app.service.registry import Registry
from app.store import jobs as job_store
from app.store import points as point_store
from app.store.db import Store
from app.store.jobs import JobRecord


def points_page(registry: Registry, name: str, after: str | None, limit: int) -> dict[str, Any]:
    """``limit`` points after the id ``after``; ``next`` is the cursor of the following page.

    One extra row is read to tell whether a next page exists, so the last page says
    ``next: null`` instead of sending the client to an empty one.
    """
    if after is not None:
        after = external_id(after, "after")  # what no id can be (NUL, too long) is a 422
    record = registry.get(name).record
    with registry.store.read() as session:
        found = point_store.list_points(session, record.id, record.dim, after, limit + 1)
    page = found[:limit]
    return {
        "points": [
            {"id": p.external_id, "payload": p.payload, "vector": p.vector.tolist()} for p in page
        ],
        "next": page[-1].external_id if len(found) > limit else None,
    }


def jobs_page(
    store: Store, collection: str | None, status: str | None, limit: int
) -> list[JobRecord]:
    with store.read() as session:
        return job_store.list_jobs(session, collection=collection, status=status, limit=limit)
