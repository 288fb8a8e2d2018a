"""Every error becomes problem+json here, and only here."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.api.responses import problem
from app.service.errors import DomainError
from app.store.outage import OUTAGE_ERRORS, is_outage

log = logging.getLogger(__name__)


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(ValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    for outage in OUTAGE_ERRORS:
        app.add_exception_handler(outage, _unexpected)
    app.add_exception_handler(Exception, _unexpected)


def as_problem(exc: Exception) -> Response:
    """The problem document for an exception raised outside FastAPI's handlers (fast path)."""
    if isinstance(exc, DomainError):
        return problem(exc.status, exc.title, exc.detail, exc.slug)
    if isinstance(exc, ValidationError):
        return _validation_problem(exc)
    if is_outage(exc):
        # Searches keep answering from memory; what needs the store fails fast until it is back.
        log.warning("store unreachable: %s", exc)
        return problem(
            503,
            "Service unavailable",
            "the store is unreachable; retry later",
            "store-unavailable",
            headers={"Retry-After": "1"},
        )
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal server error", "an unexpected error occurred", "internal")


async def _domain(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return as_problem(exc)


def _errors(errors: Any) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type")}
        for e in errors
    ]


async def _request_validation(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _errors(exc.errors())
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(
            400, "Malformed request body", "the body is not valid JSON", "malformed-body"
        )
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
    return problem(422, "Invalid request", detail, "invalid-request", errors=errors)


async def _validation(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return _validation_problem(exc)


def _validation_problem(exc: ValidationError) -> Response:
    errors = _errors(exc.errors())
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
    return problem(422, "Invalid request", detail, "invalid-request", errors=errors)


async def _http(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    slug = title.lower().replace(" ", "-")
    return problem(
        status, title, str(exc.detail), slug, headers=dict(exc.headers) if exc.headers else None
    )


async def _unexpected(_: Request, exc: Exception) -> Response:
    return as_problem(exc)
