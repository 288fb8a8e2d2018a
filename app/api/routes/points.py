"""Points: batch upsert, delete, read one, list a page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import MetricsDep, ServiceDep, SettingsDep
from app.api.responses import OrjsonResponse
from app.api.schemas import (
    MAX_POINTS_PAGE,
    REQUEST_BODIES,
    DeleteRequest,
    DeleteResponse,
    IndexParams,
    IndexResponse,
    Name,
    PointOut,
    PointPage,
)
from app.service.parsing import ParsedIndex, parse_in_worker, parse_index_body, spool_file

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
async def index_points(
    request: Request, service: ServiceDep, settings: SettingsDep, metrics: MetricsDep
) -> Response:
    body = await read_or_spool(request, settings.index_inline_max_bytes)
    try:
        parsed = await _parse(body, service.collection_dims(), settings.max_batch_points)
        params = IndexParams.model_validate(parsed.params)
        dim = service.collection_dim(params.collection)
        if parsed.dim != dim:  # created or re-created since the dimensions were read
            parsed = await _parse(body, {params.collection: dim}, settings.max_batch_points)
    finally:
        if isinstance(body, Path):
            body.unlink(missing_ok=True)
    ids, vectors, payloads = parsed.points()
    # The store transaction and the index update run off the event loop.
    seq = await run_in_threadpool(service.upsert_points, params.collection, ids, vectors, payloads)
    metrics.points_indexed.inc(len(ids))
    return OrjsonResponse({"upserted": len(ids), "seq": seq})


async def _parse(body: bytes | Path, dims: dict[str, int], max_points: int) -> ParsedIndex:
    """Small bodies here (about 7 ms per MB); spooled large ones in a worker process."""
    if isinstance(body, bytes):
        return parse_index_body(body, dims, max_points)
    return await parse_in_worker(body, dims, max_points)


async def read_or_spool(request: Request, max_bytes: int) -> bytes | Path:
    """The body in memory, or, once it outgrows ``max_bytes``, in a temporary file (its path).

    Spooling as chunks arrive means a large body is never joined into one bytes object here.
    """
    chunks: list[bytes] = []
    size = 0
    spool = None
    try:
        async for chunk in request.stream():
            if spool is not None:
                spool[0].write(chunk)
                continue
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                spool = spool_file()
                spool[0].writelines(chunks)
                chunks = []
    except BaseException:
        if spool is not None:
            spool[0].close()
            spool[1].unlink(missing_ok=True)
        raise
    if spool is None:
        return b"".join(chunks)
    spool[0].close()
    return spool[1]


@router.post("/delete", response_model=DeleteResponse, operation_id="delete_points")
def delete_points(body: DeleteRequest, service: ServiceDep) -> Response:
    deleted, seq = service.delete_points(body.collection, body.ids)
    return OrjsonResponse({"deleted": deleted, "seq": seq})


@router.get(
    "/collections/{name}/points/{point_id}", response_model=PointOut, operation_id="get_point"
)
def get_point(name: Name, point_id: str, service: ServiceDep) -> Response:
    return OrjsonResponse(service.get_point(name, point_id))


@router.get("/collections/{name}/points", response_model=PointPage, operation_id="list_points")
def list_points(
    name: Name,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS_PAGE)] = 100,
    after: Annotated[
        str | None,
        Query(min_length=1, max_length=256, description="The previous page's ``next``"),
    ] = None,
) -> Response:
    """Page through a collection's points in id order (a stable order across writes)."""
    return OrjsonResponse(service.list_points(name, after, limit))
