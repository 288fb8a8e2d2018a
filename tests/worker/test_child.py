"""Torch jobs run in a child process: progress and outcome come back to the job as if the
handler ran here, and a killed child fails its job for a retry like any failed job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from app.store import jobs
from app.store.db import Store
from tests.waiting import wait_until
from worker.child import ChildDied, JobChildren, in_child
from worker.quantize import QuantizeError, trains_catalyzer
from worker.runner import JobRunner

Progress = Any


def ignore(_value: float) -> None:
    pass


def report_process(
    store: Store, collection: str, params: dict[str, Any], progress: Progress
) -> Any:
    """Runs in the child: says where it ran, having reported progress."""
    progress(0.25)
    progress(0.5)
    return {"pid": os.getpid(), "collection": collection, "echo": params["echo"]}


def refuse(store: Store, collection: str, params: dict[str, Any], progress: Progress) -> Any:
    raise QuantizeError(f"{collection!r} cannot hold these codes")


def crash(store: Store, collection: str, params: dict[str, Any], progress: Progress) -> Any:
    raise OSError("the disk went away")


def wait_to_be_killed(
    store: Store, collection: str, params: dict[str, Any], progress: Progress
) -> Any:
    staged = Path(params["pid_file"] + ".part")
    staged.write_text(str(os.getpid()))
    staged.rename(params["pid_file"])  # whole when it appears
    threading.Event().wait()  # until the test kills this process


def test_the_handler_runs_in_a_child_and_its_progress_and_result_come_back(
    store: Store,
) -> None:
    seen: list[float] = []
    result = in_child(report_process)(store, "docs", {"echo": [1, "a"]}, seen.append)
    assert result["pid"] != os.getpid()
    assert result["collection"] == "docs" and result["echo"] == [1, "a"]
    assert seen == [0.25, 0.5]


def test_jobs_the_predicate_leaves_out_run_in_this_process(store: Store) -> None:
    result = in_child(report_process, lambda params: False)(store, "docs", {"echo": 1}, ignore)
    assert result["pid"] == os.getpid()


def test_the_handlers_exception_is_raised_here_with_its_type_and_permanence(
    store: Store,
) -> None:
    with pytest.raises(QuantizeError, match="'docs' cannot hold") as refused:
        in_child(refuse)(store, "docs", {}, ignore)
    assert refused.value.permanent
    assert any("refuse" in note for note in refused.value.__notes__)  # the child's traceback
    with pytest.raises(OSError, match="disk went away") as crashed:
        in_child(crash)(store, "docs", {}, ignore)
    assert not getattr(crashed.value, "permanent", False)


def test_a_killed_child_fails_its_job_back_to_the_queue(store: Store, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    runner = JobRunner(store, {"slow": in_child(wait_to_be_killed)}, lease_s=30, poll_s=0.05)
    job = jobs.enqueue(store, "slow", "docs", {"pid_file": str(pid_file)}, max_attempts=2)
    ran = threading.Thread(target=runner.run_once)
    ran.start()
    pid = wait_until(lambda: pid_file.exists() and int(pid_file.read_text()), what="the child")
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    ran.join()
    failed = jobs.get_job(store, job.id)
    assert failed is not None
    assert failed.status == jobs.QUEUED and failed.attempts == 1  # retried, as any failure
    assert failed.error is not None and failed.error.startswith(ChildDied.__name__)
    assert f"exit code -{signal.SIGKILL.value}" in failed.error


def test_stopping_ends_the_running_children_and_starts_no_more(
    store: Store, tmp_path: Path
) -> None:
    """A graceful worker stop hands a running torch job back to the queue at once."""
    pid_file = tmp_path / "child.pid"
    children = JobChildren()
    runner = JobRunner(
        store, {"slow": in_child(wait_to_be_killed, children=children)}, lease_s=30, poll_s=0.05
    )
    job = jobs.enqueue(store, "slow", "docs", {"pid_file": str(pid_file)}, max_attempts=2)
    ran = threading.Thread(target=runner.run_once)
    ran.start()
    pid = wait_until(lambda: pid_file.exists() and int(pid_file.read_text()), what="the child")
    children.stop()
    ran.join()
    assert not _alive(pid)
    stopped = jobs.get_job(store, job.id)
    assert stopped is not None and stopped.status == jobs.QUEUED
    assert stopped.error is not None and f"exit code -{signal.SIGTERM.value}" in stopped.error
    with pytest.raises(ChildDied, match="stopping"):
        in_child(report_process, children=children)(store, "docs", {"echo": 1}, ignore)


def test_only_catalyzer_quantize_jobs_need_a_child() -> None:
    assert trains_catalyzer({"quantization": {"kind": "catalyzer-sign", "bits": 64}})
    assert trains_catalyzer({"quantization": {"kind": "catalyzer-lattice"}})
    assert not trains_catalyzer({"quantization": {"kind": "pq", "m": 48}})
    assert not trains_catalyzer({"quantization": None})
    assert not trains_catalyzer({})


def test_the_child_does_not_outlive_its_parent(tmp_path: Path) -> None:
    """A worker killed mid-job must leave no child behind that could still publish."""
    pid_file = tmp_path / "child.pid"
    url = f"sqlite:///{tmp_path / 'store.db'}"
    code = (
        "import sys\n"
        "from app.store.db import Store\n"
        "from worker.child import in_child\n"
        "from tests.worker.test_child import ignore, wait_to_be_killed\n"
        f"in_child(wait_to_be_killed)(Store({url!r}), 'docs', "
        f"{{'pid_file': {str(pid_file)!r}}}, ignore)\n"
    )
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=root)
    try:
        child = wait_until(lambda: _started(pid_file, parent), what="the child")
    finally:
        parent.kill()
        parent.wait()
    wait_until(lambda: not _alive(child), what="the orphaned child to exit")


def _started(pid_file: Path, parent: subprocess.Popen[bytes]) -> int | None:
    assert parent.poll() is None, "the parent ended before its child started"
    return int(pid_file.read_text()) if pid_file.exists() else None


def _alive(pid: int) -> bool:
    """The process runs (a zombie awaiting its reaper counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
