"""Operations: liveness, readiness, metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from app.api.deps import MetricsDep, ServiceDep
from app.api.responses import OrjsonResponse, problem
from app.api.schemas import Health, Ready

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, operation_id="healthz")
async def healthz() -> Response:
    return OrjsonResponse({"status": "ok"})


@router.get("/readyz", response_model=Ready, operation_id="readyz")
def readyz(service: ServiceDep) -> Response:
    store = service.store_reachable()
    state: dict[str, Any] = {
        "ready": store and service.ready,
        "store": store,
        "indexes_loaded": service.ready,
        "applied_seq": service.applied_seq,
    }
    if not state["ready"]:
        failure = service.load_failure
        if failure is not None:
            detail = f"loading indexes failed: {failure}; see the log, then restart"
        elif not store:
            detail = "the store is unreachable"
        else:
            detail = "indexes are still loading"
        return problem(503, "Service unavailable", detail, "not-ready", **state)
    return OrjsonResponse(state)


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
