"""The OpenAPI document: FastAPI's, completed for SDK generators.

- Routes that parse JSON themselves (for speed) declare their bodies by reference; the
  models behind those references are added here.
- Every error the API returns is problem+json (app/api/problems.py), so every operation
  documents its 4xx/5xx responses with ``application/problem+json`` and the ``Problem``
  schema, replacing FastAPI's default 422 (a shape this API never sends).
- An optional body is declared as its model, not "model or null": generators then send
  no body when none is given (openapi-python-client would send an unset marker).
- Request and response schemas carry an example each (checked against the models in the
  tests, so they cannot drift).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

from app.api.examples import EXAMPLES
from app.api.schemas import REQUEST_BODIES
from app.service.errors import DomainError

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ValidationIssue(BaseModel):
    loc: list[str]
    msg: str
    type: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details; some problems add fields (``errors`` on 422)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[ValidationIssue] | None = None


# Errors each operation can answer with, besides those every operation can (COMMON).
# Operations not listed (added later) get DEFAULT_ERRORS.
ERRORS: dict[str, tuple[int, ...]] = {
    "list_collections": (),
    "create_collection": (400, 409, 413, 422),
    "get_collection": (404, 422),
    "delete_collection": (404, 422),
    "build_collection": (400, 404, 413, 422),
    "index_points": (400, 404, 413, 422),
    "delete_points": (400, 404, 413, 422),
    "get_point": (404, 422),
    "list_points": (404, 422),
    "search": (400, 404, 409, 413, 422),
    "search_batch": (400, 404, 409, 413, 422),
    "train_router": (400, 404, 409, 413, 422),
    "get_job": (404,),
    "list_jobs": (422,),
    "get_router_report": (404, 422),
    "get_router_report_svg": (404, 422),
    "healthz": (),
    "readyz": (),
    "metrics": (),
}
DEFAULT_ERRORS = (400, 404, 409, 422)
# 401 when an API key is configured; 503 while indexes load or a replica lags; 500.
COMMON = (401, 500, 503)
UNAUTHENTICATED = frozenset({"healthz"})
# Problem types raised outside the domain errors (middleware, the catch-all handler).
OTHER_SLUGS: dict[int, tuple[str, ...]] = {401: ("unauthorized",), 500: ("internal",)}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    models: list[type[BaseModel]] = [*REQUEST_BODIES.values(), Problem]
    for model in models:
        _add_model(components, model)
    for path in schema["paths"].values():
        for operation in path.values():
            _document_errors(operation)
            _plain_optional_body(operation)
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's, now unreferenced
        components.pop(name, None)
    for name, example in EXAMPLES.items():
        if name in components:
            components[name]["examples"] = [example]
    app.openapi_schema = schema
    return schema


def _add_model(components: dict[str, Any], model: type[BaseModel]) -> None:
    body = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(body.pop("$defs", {}))
    components[model.__name__] = body


def _document_errors(operation: dict[str, Any]) -> None:
    op_id = operation["operationId"]
    statuses = set(ERRORS.get(op_id, DEFAULT_ERRORS)) | set(COMMON)
    if op_id in UNAUTHENTICATED:
        statuses -= {401, 503}
    responses = operation["responses"]
    responses.pop("422", None)
    ref = {"$ref": f"#/components/schemas/{Problem.__name__}"}
    for status in sorted(statuses):
        responses[str(status)] = {
            "description": _description(status),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": ref}},
        }


def _plain_optional_body(operation: dict[str, Any]) -> None:
    body = operation.get("requestBody")
    if body is None or body.get("required"):
        return
    for media in body["content"].values():
        refs = [s for s in media["schema"].get("anyOf", []) if s.get("type") != "null"]
        if len(refs) == 1 and "$ref" in refs[0]:
            media["schema"] = refs[0]


def _description(status: int) -> str:
    """The status phrase and the problem types (``type`` suffixes) sent with it."""
    slugs = sorted(
        {cls.slug for cls in _domain_errors() if cls.status == status}
        | set(OTHER_SLUGS.get(status, ()))
    )
    phrase = HTTPStatus(status).phrase
    return f"{phrase}: {', '.join(slugs)}" if slugs else phrase


def _domain_errors() -> list[type[DomainError]]:
    found: list[type[DomainError]] = []
    stack = [DomainError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found
