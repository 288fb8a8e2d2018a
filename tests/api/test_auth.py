"""API keys: full access, read-only, rotation; every refusal is problem+json."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.api.auth import bearer_token, is_open, is_read, matches_any
from app.main import create_app
from app.settings import Settings
from tests.api.checked import json_of
from tests.api.conftest import wait_ready

PROBLEM = "application/problem+json"
FULL = {"Authorization": "Bearer new-key"}
OLD = {"Authorization": "Bearer old-key"}
READ = {"Authorization": "Bearer reader"}
SEARCH = {"collection": "docs", "vector": [1, 0], "log": False}

WRITES = [
    ("post", "/collections", {"json": {"name": "other", "dim": 2}}),
    ("delete", "/collections/docs", {}),
    ("post", "/collections/docs/build", {}),
    ("post", "/index", {"json": {"collection": "docs", "points": [{"id": "b", "vector": [0, 1]}]}}),
    ("post", "/delete", {"json": {"collection": "docs", "ids": ["a"]}}),
    ("post", "/train-router", {"json": {"collection": "docs"}}),
]
READS = [
    ("get", "/collections", {}),
    ("get", "/collections/docs", {}),
    ("get", "/collections/docs/points/a", {}),
    ("get", "/collections/docs/points", {}),
    ("get", "/jobs", {}),
    ("get", "/readyz", {}),
    ("get", "/openapi.json", {}),
    ("post", "/search", {"json": SEARCH}),
    ("post", "/search/batch", {"json": {"collection": "docs", "vectors": [[1, 0]], "log": False}}),
]


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[TestClient]:
    """Two full keys (a rotation in progress) and a read-only key, over one collection."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        api_key="new-key, old-key",
        read_api_key="reader",
        auto_policy=False,
    )
    with TestClient(create_app(settings)) as c:
        c.headers.update(FULL)
        wait_ready(c)
        assert c.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
        points = [{"id": "a", "vector": [1, 0]}]
        assert c.post("/index", json={"collection": "docs", "points": points}).status_code == 200
        c.headers.pop("Authorization")
        yield c


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and {"type", "title", "detail"} <= set(body)
    return body


def _call(c: TestClient, method: str, path: str, kwargs: dict, headers: dict):
    return c.request(method.upper(), path, headers=headers, **kwargs)


BAD_HEADERS = [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": "Bearer new-key-and-more"},
    {"Authorization": "Basic new-key"},
    {"Authorization": "Bearer"},
    {"Authorization": "new-key"},
]


@pytest.mark.parametrize("headers", BAD_HEADERS)
def test_without_a_valid_key_everything_but_healthz_is_401(keyed: TestClient, headers) -> None:
    assert keyed.get("/healthz", headers=headers).status_code == 200
    for method, path, kwargs in READS + WRITES:
        r = _call(keyed, method, path, kwargs, headers)
        _problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_the_console_page_and_files_load_without_a_key_but_its_data_does_not(
    keyed: TestClient,
) -> None:
    """The page must load to ask for the key; it holds no data, the API calls it makes do."""
    page = keyed.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/console/main.js">' in page.text
    for path in ("/console/main.js", "/console/api.js", "/console/console.css"):
        assert keyed.get(path).status_code == 200, path
    assert keyed.get("/console/nope.js").status_code == 404
    _problem(keyed.get("/collections"), 401)
    _problem(keyed.post("/", json={}), 401)  # only reads of the page are open


def test_read_only_key_reads_and_searches_but_cannot_write(keyed: TestClient) -> None:
    for method, path, kwargs in READS:
        r = _call(keyed, method, path, kwargs, READ)
        assert r.status_code == 200, (path, r.text)
    for method, path, kwargs in WRITES:
        body = _problem(_call(keyed, method, path, kwargs, READ), 403)
        assert body["type"].endswith("read-only-key")
    assert json_of(keyed.get("/collections/docs", headers=FULL))["count"] == 1


def test_both_keys_of_a_rotation_have_full_access(keyed: TestClient) -> None:
    for headers, pid in ((FULL, "n"), (OLD, "o"), ({"Authorization": "bearer old-key"}, "l")):
        body = {"collection": "docs", "points": [{"id": pid, "vector": [0, 1]}]}
        assert keyed.post("/index", json=body, headers=headers).status_code == 200
    assert json_of(keyed.get("/collections/docs", headers=OLD))["count"] == 4


def test_a_read_only_key_needs_a_full_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, read_api_key="reader")
    keys = Settings(data_dir=tmp_path, api_key=" a,b ,, ", read_api_key="r")
    assert keys.api_keys == ("a", "b") and keys.read_api_keys == ("r",)


def test_helpers() -> None:
    assert bearer_token(b"BEARER  tok ") == b"tok"
    assert bearer_token(b"Basic tok") is None
    assert bearer_token(None) is None
    assert matches_any(b"b", (b"a", b"b")) and not matches_any(b"", (b"a",))
    assert is_read("GET", "/collections") and is_read("POST", "/search/batch")
    assert not is_read("POST", "/index") and not is_read("DELETE", "/collections/x")
    assert is_open("POST", "/healthz") and is_open("GET", "/") and is_open("GET", "/console/a.js")
    assert not is_open("POST", "/") and not is_open("GET", "/consoles") and not is_open("GET", "/x")
