"""Real server processes (``python -m app.cli serve``) on free loopback ports, for tests
that kill, restart or replicate them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.hermetic import without_app_settings
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def maps_torch(pid: int) -> bool:
    """The process has torch's libraries mapped: it imported torch (seen from outside)."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


class _Process:
    """A ``python -m app.cli <command>`` child on one store, killable at any moment."""

    command: tuple[str, ...] = ()

    def __init__(self, database_url: str, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.env = {
            # only the settings given here, whatever the caller exported (tests/hermetic.py)
            **without_app_settings(os.environ),
            "PYTHONPATH": str(ROOT),
            "VECROUTE_DATABASE_URL": database_url,
            "VECROUTE_DATA_DIR": str(data_dir),
            "VECROUTE_CATCHUP_INTERVAL_S": "0.1",
            "VECROUTE_LOG_LEVEL": "WARNING",
            "OMP_NUM_THREADS": "1",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, *args: str) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            cwd=self.data_dir,  # not the checkout, whose .env would be read
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Server(_Process):
    """``vecroute serve`` on a free loopback port."""

    def __init__(self, database_url: str, data_dir: Path, **env: str) -> None:
        super().__init__(database_url, data_dir, **env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        key = env.get("VECROUTE_API_KEY")
        self.headers = {"Authorization": f"Bearer {key.split(',')[0]}"} if key else {}

    def start(self) -> Server:
        return self.launch().wait_ready()

    def launch(self) -> Server:
        """Start the process without waiting (start-up imports take seconds: start several,
        then wait for each)."""
        self.spawn("serve", "--port", str(self.port))
        return self

    def wait_ready(self) -> Server:
        wait_until(self._ready, what=f"the server on port {self.port} to be ready")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "server exited at start-up"
        try:
            ready = httpx.get(self.url + "/readyz", headers=self.headers, timeout=5)
        except httpx.HTTPError:
            return False
        return ready.status_code == 200


class WorkerProcess(_Process):
    """``vecroute worker`` alone, to kill in the middle of a job."""

    def start(self) -> WorkerProcess:
        self.spawn("worker")
        return self
