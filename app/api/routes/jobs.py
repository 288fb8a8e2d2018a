"""Router training, job status and the job list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api.deps import ServiceDep
from app.api.responses import OrjsonResponse
from app.api.schemas import (
    MAX_JOBS_PAGE,
    JobAccepted,
    JobList,
    JobOut,
    JobStatus,
    Name,
    TrainRouterRequest,
)
from app.store.jobs import JobRecord

router = APIRouter(tags=["jobs"])


@router.post(
    "/train-router", status_code=202, response_model=JobAccepted, operation_id="train_router"
)
def train_router(body: TrainRouterRequest, service: ServiceDep) -> Response:
    params = body.model_dump(exclude={"collection"}, exclude_none=True)
    job = service.train_router(body.collection, params)
    return OrjsonResponse({"job_id": job.id}, status_code=202)


@router.get("/jobs", response_model=JobList, operation_id="list_jobs")
def list_jobs(
    service: ServiceDep,
    collection: Annotated[Name | None, Query()] = None,
    status: Annotated[JobStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_JOBS_PAGE)] = 50,
) -> Response:
    """The newest jobs first, optionally of one collection and one status."""
    jobs = service.list_jobs(collection, status, limit)
    return OrjsonResponse({"jobs": [job_view(job) for job in jobs]})


@router.get("/jobs/{job_id}", response_model=JobOut, operation_id="get_job")
def get_job(job_id: str, service: ServiceDep) -> Response:
    return OrjsonResponse(job_view(service.get_job(job_id)))


def job_view(job: JobRecord) -> dict:
    return {
        "id": job.id,
        "kind": job.kind,
        "collection": job.collection,
        "status": job.status,
        "progress": job.progress,
        "result": job.result,
        "error": job.error,
        "attempts": job.attempts,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }
