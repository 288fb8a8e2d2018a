"""Points: batch upsert, delete, read one."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import JsonBody, MetricsDep, ServiceDep
from app.api.responses import OrjsonResponse
from app.api.schemas import (
    REQUEST_BODIES,
    DeleteRequest,
    DeleteResponse,
    IndexParams,
    IndexResponse,
    Name,
    PointOut,
)

router = APIRouter(tags=["points"])

_INDEX_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "$ref": f"#/components/schemas/{REQUEST_BODIES['index_points'].__name__}"
                }
            }
        },
    }
}


@router.post(
    "/index", response_model=IndexResponse, operation_id="index_points", openapi_extra=_INDEX_BODY
)
async def index_points(body: JsonBody, service: ServiceDep, metrics: MetricsDep) -> Response:
    points = body.pop("points", None)
    params = IndexParams.model_validate(body)
    # Validation, the store transaction and the index update run off the event loop.
    upserted, seq = await run_in_threadpool(service.index_points, params.collection, points)
    metrics.points_indexed.inc(upserted)
    return OrjsonResponse({"upserted": upserted, "seq": seq})


@router.post("/delete", response_model=DeleteResponse, operation_id="delete_points")
def delete_points(body: DeleteRequest, service: ServiceDep) -> Response:
    deleted, seq = service.delete_points(body.collection, body.ids)
    return OrjsonResponse({"deleted": deleted, "seq": seq})


@router.get(
    "/collections/{name}/points/{point_id}", response_model=PointOut, operation_id="get_point"
)
def get_point(name: Name, point_id: str, service: ServiceDep) -> Response:
    return OrjsonResponse(service.get_point(name, point_id))
