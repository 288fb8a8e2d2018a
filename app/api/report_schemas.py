"""Response models of the router report (``GET /collections/{name}/router/report``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class RoutingCurve(BaseModel):
    top1_accuracy: list[float] | None = Field(
        description="Share of held-out queries whose exact nearest neighbour's list is "
        "probed, per nprobe (null when not measured)"
    )
    recall: list[float] = Field(description="Held-out recall@k per nprobe")


class ReportEvaluation(BaseModel):
    source: Literal["train-router", "build"] = Field(
        description="train-router: the newest router trained for the active clustering and "
        "centroid routing, on that job's held-out queries; build: centroid recall only"
    )
    router_version: int | None
    router_kind: str | None
    activated: bool | None = Field(description="Whether that router passed the gate")
    reason: str | None
    heldout_queries: int
    k: int
    created_at: str | None


class RouterReport(BaseModel):
    collection: str
    clustering_version: int | None
    active_router_version: int | None
    evaluation: ReportEvaluation | None = Field(
        description="Where the curves come from; null when nothing was measured yet (no "
        "clustering, or no logged queries when it was built)"
    )
    nprobe: list[int]
    centroid: RoutingCurve | None
    learned: RoutingCurve | None = Field(
        description="Null until a router is trained for the active clustering"
    )
