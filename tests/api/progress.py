"""What HTTP tests wait for, read through the API: a job finished, a build served, queries
logged in the store.

Every read checks its status code before its body (``checked.json_of``), so a failing
endpoint shows as itself, not as a timeout. Works with a ``TestClient`` (an
``httpx.Client``) and a real server's ``httpx.Client`` alike.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.checked import json_of
from tests.waiting import wait_until

FINISHED = ("succeeded", "failed")


def job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    return dict(json_of(client.get(f"/jobs/{job_id}")))


def finished_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """The job once it succeeded or failed."""
    return wait_until(
        lambda: (j := job(client, job_id))["status"] in FINISHED and j,
        what=f"job {job_id} to finish",
    )


def succeeded_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    done = finished_job(client, job_id)
    assert done["status"] == "succeeded", done
    return done


def collection(client: httpx.Client, name: str = "docs") -> dict[str, Any]:
    return dict(json_of(client.get(f"/collections/{name}")))


def start_build(client: httpx.Client, name: str = "docs", **params: Any) -> str:
    """``POST /collections/{name}/build`` (202); the job id."""
    accepted = json_of(client.post(f"/collections/{name}/build", json=params or None), 202)
    return str(accepted["job_id"])


def served_build(client: httpx.Client, job_id: str, name: str = "docs") -> dict[str, Any]:
    """Wait for *this* build job (not one the policy scheduled) to succeed and for this
    process to serve its clustering (or a newer one); the collection's info then."""
    version = succeeded_job(client, job_id)["result"]["clustering_version"]
    return wait_until(
        lambda: (
            (info := collection(client, name))["index"]["clustering_version"] is not None
            and info["index"]["clustering_version"] >= version
            and info
        ),
        what=f"clustering {version} of {name!r} to be served",
    )


def served_ivf(client: httpx.Client, name: str = "docs") -> dict[str, Any]:
    """Wait until searches of the collection go through an IVF (whichever build made it)."""
    return wait_until(
        lambda: (info := collection(client, name))["index"]["state"] == "ivf" and info,
        what=f"an IVF of {name!r}",
    )


def logged_queries(client: httpx.Client, name: str = "docs") -> int:
    """Queries of the collection written to the store's query log (``/metrics``)."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    sample = f'vecroute_query_log_queries{{collection="{name}"}} '
    for line in r.text.splitlines():
        if line.startswith(sample):
            return int(float(line.removeprefix(sample)))
    return 0


def wait_logged(client: httpx.Client, n: int, name: str = "docs") -> None:
    """Searches log their queries off the request path: wait until ``n`` reached the store."""
    wait_until(lambda: logged_queries(client, name) >= n, what=f"{n} logged queries of {name!r}")
