"""The Dockerfile names only what exists, installs CPU-only torch, runs as a non-root user.

No Docker engine runs here, so the file is checked against the project instead of built.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from tests.deploy.files import (
    PYPROJECT,
    ROOT,
    SETTINGS_ENV,
    dockerfile,
    documented_get_paths,
    env_pairs,
    parse_command,
)

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _all(keyword: str) -> list[str]:
    return [i.args for i in dockerfile() if i.keyword == keyword]


def test_base_image_and_cpu_only_torch_before_the_project() -> None:
    instructions = dockerfile()
    assert instructions[0].keyword == "FROM" and instructions[0].args == "python:3.11-slim"
    runs = [i.args for i in instructions if i.keyword == "RUN"]
    pin = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    torch_run = next(i for i, r in enumerate(runs) if "torch" in r)
    assert f"--index-url {CPU_INDEX}" in runs[torch_run]
    assert pin.replace(" ", "") in runs[torch_run].split()  # the same pin as pyproject
    project_run = next(
        i for i, r in enumerate(runs) if re.search(r"pip install -c constraints.txt -e \.", r)
    )
    assert torch_run < project_run  # so the project's torch==… is already satisfied
    assert "extra-index-url" not in " ".join(runs)  # no second index that could win


def test_copied_paths_exist_and_are_not_ignored() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "data"} <= ignored
    copied = set()
    for args in _all("COPY"):
        *sources, _ = args.split()
        copied |= set(sources)
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source not in ignored, source
    # What `pip install -e .` and the migrations at start-up read (app/store/migrate.py).
    assert {"pyproject.toml", "README.md", "alembic.ini", "migrations", "app", "worker"} <= copied


def test_runs_as_a_created_non_root_user() -> None:
    (user,) = _all("USER")
    assert user not in {"root", "0"}
    assert any("useradd" in r and r.rstrip().endswith(user) for r in _all("RUN"))
    keywords = [i.keyword for i in dockerfile()]
    assert keywords.index("USER") < keywords.index("CMD")


def test_default_command_serves_on_the_exposed_port_with_a_healthcheck() -> None:
    (cmd,) = [i for i in dockerfile() if i.keyword == "CMD"]
    args = parse_command(cmd.exec_form())
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert _all("EXPOSE") == [str(args.port)]
    (check,) = [i for i in dockerfile() if i.keyword == "HEALTHCHECK"]
    url = re.search(r"http://[^'\"]+", " ".join(check.exec_form()))
    assert url is not None
    parsed = urlparse(url[0])
    assert parsed.port == args.port and parsed.path in documented_get_paths()
    assert parsed.path == "/healthz"  # open even when an API key is set


def test_environment_names_are_settings() -> None:
    for args in _all("ENV"):
        for name in env_pairs(args):
            assert not name.startswith("VECROUTE_") or name in SETTINGS_ENV, name
