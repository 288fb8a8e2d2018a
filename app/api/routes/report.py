"""The router report of a collection: JSON, and the same drawn as SVG."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import ServiceDep
from app.api.plot import report_svg
from app.api.report_schemas import RouterReport
from app.api.responses import OrjsonResponse
from app.api.schemas import Name

router = APIRouter(tags=["collections"])

SVG = "image/svg+xml"


@router.get(
    "/collections/{name}/router/report",
    response_model=RouterReport,
    operation_id="get_router_report",
    summary="Held-out top-1 accuracy and recall@k vs nprobe, centroid and learned routing",
)
def get_router_report(name: Name, service: ServiceDep) -> Response:
    return OrjsonResponse(service.router_report(name))


@router.get(
    "/collections/{name}/router/report.svg",
    operation_id="get_router_report_svg",
    summary="The router report drawn as an SVG line chart",
    response_class=Response,
    responses={200: {"content": {SVG: {"schema": {"type": "string"}}}}},
)
def get_router_report_svg(name: Name, service: ServiceDep) -> Response:
    report = service.router_report(name)
    return Response(report_svg(report), media_type=SVG)
