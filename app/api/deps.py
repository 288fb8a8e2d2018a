"""Dependency aliases: handlers declare what they need as typed parameters."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from app.api.metrics import Metrics
from app.service.errors import MalformedBody
from app.service.service import Service
from app.settings import Settings


async def get_service(request: Request) -> Service:
    return request.app.state.service


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def json_object(request: Request) -> dict[str, Any]:
    return parse_object(await request.body())


def parse_object(raw: bytes) -> dict[str, Any]:
    """The body parsed by orjson, which also refuses NaN/Infinity literals."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedBody("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise MalformedBody("the body must be a JSON object")
    return body


ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
JsonBody = Annotated[dict[str, Any], Depends(json_object)]
