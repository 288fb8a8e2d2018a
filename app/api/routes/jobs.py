"""Router training and job status."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import ServiceDep
from app.api.responses import OrjsonResponse
from app.api.schemas import JobAccepted, JobOut, TrainRouterRequest
from app.store.jobs import JobRecord

router = APIRouter(tags=["jobs"])


@router.post(
    "/train-router", status_code=202, response_model=JobAccepted, operation_id="train_router"
)
def train_router(body: TrainRouterRequest, service: ServiceDep) -> Response:
    params = body.model_dump(exclude={"collection"}, exclude_none=True)
    job = service.train_router(body.collection, params)
    return OrjsonResponse({"job_id": job.id}, status_code=202)


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
