"""The OpenAPI document is complete enough to generate a good SDK from."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.api import report_schemas, schemas
from app.api.examples import EXAMPLES
from app.api.openapi import PROBLEM_MEDIA_TYPE, Problem
from app.main import create_app
from app.settings import Settings
from tests.api import openapi_snapshot


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The document as served (no lifespan needed: it is built from the routes)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'store.db'}"
    client = TestClient(create_app(Settings(database_url=url, embedded_worker=False)))
    return client.get("/openapi.json").json()


def test_the_document_is_the_committed_snapshot() -> None:
    """Any change to the API shows here as a diff: regenerate it with ``make openapi``."""
    problem = openapi_snapshot.mismatch(
        openapi_snapshot.SNAPSHOT.read_text(), openapi_snapshot.render()
    )
    assert problem is None, problem


def test_a_changed_document_fails_with_its_diff_and_the_command_to_accept_it(
    spec: dict,
) -> None:
    committed = openapi_snapshot.SNAPSHOT.read_text()
    assert json.loads(committed) == spec  # the snapshot is the document as served
    changed = json.loads(committed)
    del changed["paths"]["/healthz"]
    live = json.dumps(changed, indent=2, sort_keys=True) + "\n"
    problem = openapi_snapshot.mismatch(committed, live)
    assert problem is not None and "`make openapi`" in problem
    assert '-    "/healthz": {' in problem and "+++ openapi.json (the app's)" in problem


def _operations(spec: dict) -> dict[str, dict]:
    return {op["operationId"]: op for path in spec["paths"].values() for op in path.values()}


def test_operation_ids_are_sdk_method_names(spec: dict) -> None:
    """The exact set is pinned in test_contract.py; here: each makes a Python name."""
    ops = _operations(spec)
    assert all(op_id.isidentifier() and op_id.islower() for op_id in ops)
    assert len(ops) == sum(len(path) for path in spec["paths"].values())  # none repeated


def test_every_error_response_is_documented_as_problem_json(spec: dict) -> None:
    for op_id, op in _operations(spec).items():
        errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
        assert any(c.startswith("5") for c in errors), op_id
        if op_id not in {"healthz", "list_collections", "metrics", "readyz"}:
            assert any(c.startswith("4") for c in errors), op_id
        for code, response in errors.items():
            assert set(response["content"]) == {PROBLEM_MEDIA_TYPE}, (op_id, code)
            ref = response["content"][PROBLEM_MEDIA_TYPE]["schema"]["$ref"]
            assert ref.endswith("/Problem"), (op_id, code)
    schemas_ = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas_ and "Problem" in schemas_
    described = _operations(spec)["get_collection"]["responses"]["404"]["description"]
    assert "collection-not-found" in described


def test_every_operation_has_typed_bodies(spec: dict) -> None:
    for op_id, op in _operations(spec).items():
        if "requestBody" in op:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            refs = [schema, *schema.get("anyOf", [])]  # an optional body: model or null
            assert any("$ref" in s for s in refs), op_id
        ok = next(r for code, r in op["responses"].items() if code.startswith("2"))
        if "content" in ok:
            (media,) = ok["content"].values()
            assert media["schema"], op_id


def _model(name: str) -> type[BaseModel]:
    for module in (schemas, report_schemas):
        if hasattr(module, name):
            return getattr(module, name)
    assert name == "Problem"
    return Problem


def test_examples_are_valid_instances_of_their_models(spec: dict) -> None:
    for name, example in EXAMPLES.items():
        _model(name).model_validate(example)
        assert spec["components"]["schemas"][name]["examples"] == [example]
    for op_id in ("create_collection", "index_points", "search", "search_batch", "train_router"):
        ref = _operations(spec)[op_id]["requestBody"]["content"]["application/json"]["schema"]
        assert ref["$ref"].rsplit("/", 1)[1] in EXAMPLES, op_id
