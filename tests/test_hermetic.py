"""The suite ignores the caller's app settings and .env (tests/hermetic.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from tests.api.servers import ROOT, Server
from tests.hermetic import isolate

# What a developer's shell and .env might hold: either would make unauthenticated
# requests 401, and the test settings' limits not the ones the tests state.
EXPORTED = {"VECROUTE_API_KEY": "from-the-shell", "VECROUTE_READ_API_KEY": "from-the-shell"}
DOTENV = "VECROUTE_API_KEY=from-dotenv\nVECROUTE_MAX_K=7\n"


def test_isolation_drops_exported_settings_and_the_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in EXPORTED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VECROUTE_DEBIAN_DATA", "/kept")
    (tmp_path / ".env").write_text(DOTENV)
    monkeypatch.chdir(tmp_path)
    leaky = Settings()
    assert leaky.api_key == "from-the-shell" and leaky.max_k == 7  # what would leak
    (tmp_path / "clean").mkdir()
    isolate(monkeypatch, tmp_path / "clean")
    settings = Settings()
    assert settings.api_key is None and settings.max_k == Settings.model_fields["max_k"].default
    assert "VECROUTE_READ_API_KEY" not in os.environ
    assert os.environ["VECROUTE_DEBIAN_DATA"] == "/kept"  # the suite's own knob, not a setting


def test_a_server_starts_from_the_settings_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VECROUTE_API_KEY", "from-the-shell")
    server = Server(f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "data").start()
    try:
        assert "VECROUTE_API_KEY" not in server.env
        assert not (Path(server.data_dir) / ".env").exists()  # its working directory
        r = httpx.post(server.url + "/collections", json={"name": "docs", "dim": 2}, timeout=30)
        assert r.status_code == 201, r.text  # no key configured: no 401
    finally:
        server.stop()


def test_a_developers_shell_and_dotenv_leave_the_suite_green(tmp_path: Path) -> None:
    """The suite run from a directory holding a .env, with an API key exported."""
    (tmp_path / ".env").write_text(DOTENV)
    # An in-process app's test (servers: the test above); 401s if the key leaked.
    target = f"{ROOT}/tests/api/test_contract.py::test_collection_lifecycle[sqlite]"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target],
        cwd=tmp_path,
        env={**os.environ, **EXPORTED},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "1 passed" in run.stdout
