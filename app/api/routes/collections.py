"""Collections: create, list, read, delete, (re)build the IVF, change its codes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response

from app.api.deps import ServiceDep
from app.api.responses import OrjsonResponse
from app.api.schemas import (
    BuildRequest,
    CollectionCreate,
    CollectionInfo,
    CollectionList,
    CollectionPatch,
    JobAccepted,
    Name,
    PayloadIndexesUpdate,
)

router = APIRouter(tags=["collections"])


@router.post(
    "/collections",
    status_code=201,
    response_model=CollectionInfo,
    operation_id="create_collection",
)
def create_collection(body: CollectionCreate, service: ServiceDep) -> Response:
    info = service.create_collection(
        name=body.name,
        dim=body.dim,
        metric=body.metric,
        nlist=body.nlist,
        algorithm=body.clustering,
        default_nprobe=body.default_nprobe,
        payload_indexes=body.payload_indexes,
        shards=body.shards,
        replicas=body.replicas,
        quantization=body.quantization.model_dump(exclude_none=True)
        if body.quantization is not None
        else None,
    )
    return OrjsonResponse(info, status_code=201)


@router.get("/collections", response_model=CollectionList, operation_id="list_collections")
def list_collections(service: ServiceDep) -> Response:
    return OrjsonResponse({"collections": service.list_collections()})


@router.get("/collections/{name}", response_model=CollectionInfo, operation_id="get_collection")
def get_collection(name: Name, service: ServiceDep) -> Response:
    return OrjsonResponse(service.get_collection(name))


@router.delete("/collections/{name}", status_code=204, operation_id="delete_collection")
def delete_collection(name: Name, service: ServiceDep) -> Response:
    service.delete_collection(name)
    return Response(status_code=204)


@router.put(
    "/collections/{name}/payload-indexes",
    response_model=CollectionInfo,
    operation_id="set_payload_indexes",
)
def set_payload_indexes(name: Name, body: PayloadIndexesUpdate, service: ServiceDep) -> Response:
    """Declare the payload keys filters read from typed columns (replaces the previous set).

    The columns are built from the payloads in memory before the response; filters on any
    key work without a declaration, scanning payloads instead.
    """
    return OrjsonResponse(service.set_payload_indexes(name, body.fields))


@router.post(
    "/collections/{name}/build",
    status_code=202,
    response_model=JobAccepted,
    operation_id="build_collection",
)
def build_collection(
    name: Name, service: ServiceDep, body: Annotated[BuildRequest | None, Body()] = None
) -> Response:
    params = body.model_dump(exclude_none=True) if body is not None else {}
    job = service.build(name, params)
    return OrjsonResponse({"job_id": job.id}, status_code=202)


@router.patch(
    "/collections/{name}",
    status_code=202,
    response_model=JobAccepted,
    operation_id="update_collection",
)
def update_collection(name: Name, body: CollectionPatch, service: ServiceDep) -> Response:
    """Rebuild the index with new codes (``quantization``): the job checks they can be
    trained on this collection, then every API process rebuilds aside and swaps the new
    index in; searches keep working, and a failed rebuild leaves the old index serving."""
    job = service.set_quantization(name, body.quantization.model_dump(exclude_none=True))
    return OrjsonResponse({"job_id": job.id}, status_code=202)
