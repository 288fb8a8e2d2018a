"""Request ids on responses and log lines; the Prometheus metrics the issue lists."""

from __future__ import annotations

import re

import numpy as np
from fastapi.testclient import TestClient

from tests.api.conftest import LogLines
from tests.api.progress import served_build, start_build, wait_logged
from tests.waiting import wait_until


def test_request_id_is_echoed_or_made_and_logged(
    access_logged: tuple[TestClient, LogLines],
) -> None:
    client, lines = access_logged
    assert client.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
    given = client.get("/collections/docs", headers={"X-Request-ID": "abc-123"})
    assert given.status_code == 200 and given.headers["x-request-id"] == "abc-123"
    made = client.post(  # the /search fast path, and a header unfit to echo
        "/search",
        json={"collection": "docs", "vector": [1, 0]},
        headers={"X-Request-ID": "bad id\twith spaces"},
    )
    assert made.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])
    missing = client.get("/collections/nope")
    assert missing.status_code == 404 and missing.headers["x-request-id"]
    by_id = {line["request_id"]: line for line in lines.lines}
    assert by_id["abc-123"]["path"] == "/collections/docs"
    assert by_id["abc-123"]["status"] == 200 and by_id["abc-123"]["message"] == "request"
    assert by_id[made.headers["x-request-id"]]["path"] == "/search"
    assert by_id[missing.headers["x-request-id"]]["status"] == 404


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text, found by name and labels."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_cover_searches_indexes_jobs_and_query_log(manual_client: TestClient) -> None:
    client = manual_client
    rng = np.random.default_rng(0)
    r = client.post("/collections", json={"name": "docs", "dim": 4, "nlist": 4})
    assert r.status_code == 201, r.text
    points = [{"id": i, "vector": v} for i, v in enumerate(rng.normal(size=(80, 4)).tolist())]
    assert client.post("/index", json={"collection": "docs", "points": points}).status_code == 200
    r = client.post("/search", json={"collection": "docs", "vector": [1, 0, 0, 0]})
    assert r.status_code == 200, r.text
    served_build(client, start_build(client))
    r = client.post("/search", json={"collection": "docs", "vector": [1, 0, 0, 0], "nprobe": 2})
    assert r.status_code == 200, r.text
    r = client.post(
        "/search/batch",
        json={"collection": "docs", "vectors": [[0, 1, 0, 0]] * 3, "routing": "centroid"},
    )
    assert r.status_code == 200, r.text
    wait_logged(client, 5)  # the query log is written by a thread
    job_done = 'vecroute_job_seconds_count{kind="build",outcome="succeeded"}'

    def scraped_after_the_job() -> str | None:
        """The job listener runs after the job is stored as succeeded."""
        r = client.get("/metrics")
        assert r.status_code == 200
        return r.text if job_done in r.text else None

    text = wait_until(scraped_after_the_job, what="the build in the job metrics")
    assert _sample(text, "vecroute_search_queries_total", routing="exact", nprobe="none") == 1
    assert _sample(text, "vecroute_search_queries_total", routing="centroid", nprobe="2") == 1
    default = str(min(8, 4))
    assert _sample(text, "vecroute_search_queries_total", routing="centroid", nprobe=default) == 3
    assert _sample(text, "vecroute_points", collection="docs") == 80
    assert _sample(text, "vecroute_index_lists", collection="docs") == 4
    assert _sample(text, "vecroute_index_bytes", collection="docs") >= 80 * 4 * 4
    assert _sample(text, "vecroute_query_log_queries", collection="docs") == 5
    assert _sample(text, "vecroute_jobs", kind="build", status="succeeded") == 1
    assert _sample(text, "vecroute_job_seconds_count", kind="build", outcome="succeeded") == 1
    assert _sample(text, "vecroute_http_request_seconds_count", route="/search", status="200") == 2
