"""docker-compose.yml: postgres, a one-shot migration, a scalable API and a worker, wired
to commands, settings, ports and paths that exist in the project."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.api.servers import WorkerProcess, free_port
from tests.deploy.files import (
    PYPROJECT,
    ROOT,
    SETTINGS_ENV,
    documented_get_paths,
    interpolate,
    parse_command,
)
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _project_services(services: dict[str, Any]) -> dict[str, Any]:
    """The services built from this repository that ``docker compose up`` starts."""
    return {name: s for name, s in services.items() if "build" in s and "profiles" not in s}


def _cluster_services(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if "cluster" in s.get("profiles", [])}


def test_services_and_their_order(services: dict[str, Any]) -> None:
    assert {"postgres", "migrate", "api", "worker"} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"


def test_postgres_has_a_volume_and_a_healthcheck(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    pg = services["postgres"]
    volume, target = pg["volumes"][0].split(":")
    assert volume in compose["volumes"] and target == "/var/lib/postgresql/data"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])


def test_project_services_build_this_repository(services: dict[str, Any]) -> None:
    for service in _project_services(services).values():
        assert (ROOT / service["build"] / "Dockerfile").is_file()
    assert set(_project_services(services)) == {"migrate", "api", "worker"}


def test_every_command_is_a_cli_command(services: dict[str, Any]) -> None:
    commands = {n: parse_command(s["command"]) for n, s in _project_services(services).items()}
    assert commands["migrate"].command == "migrate"
    api = commands["api"]
    assert api.command == "serve" and api.no_worker and api.host == "0.0.0.0"
    assert commands["worker"].command == "worker" and commands["worker"].metrics_port


def test_api_is_scalable_on_its_port(services: dict[str, Any]) -> None:
    api = services["api"]
    assert "container_name" not in api  # a fixed name would forbid replicas
    (mapping,) = api["ports"]
    host, container = interpolate(mapping).rsplit(":", 1)
    assert int(container) == parse_command(api["command"]).port
    assert re.fullmatch(r"\d+-\d+", host)  # a range: one host port per replica


def test_environment_is_settings_and_points_at_postgres(services: dict[str, Any]) -> None:
    for name, service in _project_services(services).items():
        env = service["environment"]
        assert set(env) <= SETTINGS_ENV, (name, set(env) - SETTINGS_ENV)
        url = make_url(interpolate(env["VECROUTE_DATABASE_URL"]))
        pg_env = {k: interpolate(v) for k, v in services["postgres"]["environment"].items()}
        assert url.drivername == "postgresql+psycopg" and url.host == "postgres"
        assert url.port == 5432 and url.database == pg_env["POSTGRES_DB"]
        assert url.username == pg_env["POSTGRES_USER"]
        assert url.password == pg_env["POSTGRES_PASSWORD"]


def test_healthchecks_reach_served_paths(services: dict[str, Any]) -> None:
    worker = services["worker"]
    url = re.search(r"http://[^'\"]+", " ".join(worker["healthcheck"]["test"]))
    assert url is not None
    parsed = urlparse(url[0])
    assert parsed.port == parse_command(worker["command"]).metrics_port
    assert parsed.path == "/metrics"  # prometheus_client's server answers any path
    assert "/healthz" in documented_get_paths()  # the image's own healthcheck, used by api
    assert "healthcheck" not in services["api"]


def test_worker_metrics_port_answers(tmp_path: Path) -> None:
    """What the worker's healthcheck asks: ``vecroute worker --metrics-port`` serving."""
    worker = WorkerProcess(f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "data")
    port = free_port()
    worker.spawn("worker", "--metrics-port", str(port))

    def scraped() -> httpx.Response | None:
        assert worker.proc is not None and worker.proc.poll() is None, "the worker exited"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        except httpx.HTTPError:
            return None

    try:
        r = wait_until(scraped, what="the worker's metrics port to answer")
        assert r.status_code == 200 and "vecroute_job_seconds" in r.text
    finally:
        worker.stop()


def test_the_cluster_profile_is_a_ray_head_two_workers_and_a_coordinating_api(
    services: dict[str, Any],
) -> None:
    cluster = _cluster_services(services)
    assert set(cluster) == {"ray-head", "ray-worker-1", "ray-worker-2", "api-cluster"}
    for name, service in cluster.items():
        assert service["build"]["args"]["EXTRAS"] == "cluster", name  # the image with ray
        assert (ROOT / service["build"]["context"] / "Dockerfile").is_file()
        env = service["environment"]
        assert set(env) <= SETTINGS_ENV, (name, set(env) - SETTINGS_ENV)
        assert make_url(interpolate(env["VECROUTE_DATABASE_URL"])).host == "postgres"
    head = cluster["ray-head"]["command"]
    assert head[:3] == ["ray", "start", "--head"] and "--block" in head
    port = head[head.index("--port") + 1]
    for worker in ("ray-worker-1", "ray-worker-2"):
        command = cluster[worker]["command"]
        assert command[command.index("--address") + 1] == f"ray-head:{port}"
        assert cluster[worker]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    api = cluster["api-cluster"]
    assert api["environment"]["VECROUTE_CLUSTER_ADDRESS"] == f"ray-head:{port}"
    args = parse_command(api["command"])
    assert args.command == "serve" and args.no_worker and args.host == "0.0.0.0"
    (mapping,) = api["ports"]
    assert int(interpolate(mapping).rsplit(":", 1)[1]) == args.port
    assert {"ray-worker-1", "ray-worker-2"} <= set(api["depends_on"])


def test_the_image_installs_the_extras_it_is_built_with() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ARG EXTRAS=""' in text
    assert 'pip install -c constraints.txt -e ."${EXTRAS:+[$EXTRAS]}"' in text
    assert "cluster" in PYPROJECT["project"]["optional-dependencies"]
