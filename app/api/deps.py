"""Dependency aliases: handlers declare what they need as typed parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from app.api.metrics import Metrics
from app.api.search_params import SearchParamCache
from app.service.parsing import load_object
from app.service.service import Service
from app.settings import Settings


async def get_service(request: Request) -> Service:
    return request.app.state.service


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_search_params(request: Request) -> SearchParamCache:
    return request.app.state.search_params


async def json_object(request: Request) -> dict[str, Any]:
    return load_object(await request.body())


ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
SearchParamsDep = Annotated[SearchParamCache, Depends(get_search_params)]
JsonBody = Annotated[dict[str, Any], Depends(json_object)]
