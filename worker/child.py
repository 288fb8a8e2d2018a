"""Jobs that train with torch run in a child process, so torch never enters the worker's own.

The worker embedded in ``vecroute serve`` shares the API process: a training job run there
would import torch (hundreds of MB and its own thread pools) into the serving process for
good. ``in_child`` wraps such a job's handler: the child is started with the "spawn"
context (a fresh interpreter: "fork" would copy the API's threads and locks mid-use), opens
its own store on the same URL, runs the handler, and sends its progress and outcome over a
pipe; the parent relays progress to the job (its heartbeat carries it) and returns the
result or raises the handler's own exception, so the job runner records it as before.

A child that dies without an outcome (killed, out of memory) raises ``ChildDied``, which
is not permanent: the job goes back to the queue as any failed job does. The child exits
as soon as its parent dies (a watchdog on the parent's sentinel), so a killed worker leaves
no orphan that publishes after another worker took the job over; a worker stopped
gracefully ends its children (``JobChildren.stop``), so their jobs go back to the queue at
once rather than when the process exits.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from app.store.db import Store
from worker.runner import Handler

Progress = Callable[[float], None]
NeedsChild = Callable[[dict[str, Any]], bool]

_PROGRESS, _SUCCEEDED, _FAILED = "progress", "succeeded", "failed"


class ChildDied(RuntimeError):
    """The job's child process ended without reporting an outcome; worth a retry."""


class ChildFailed(RuntimeError):
    """A handler's exception that could not cross the pipe as itself (not picklable)."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def always(_params: dict[str, Any]) -> bool:
    return True


class JobChildren:
    """The job children a worker runs, so that stopping the worker ends them: a stopped
    child's job fails with ``ChildDied`` and goes back to the queue for another worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[multiprocessing.process.BaseProcess] = set()
        self._stopped = False

    def start(self, child: multiprocessing.process.BaseProcess) -> None:
        with self._lock:
            if self._stopped:
                raise ChildDied("the worker is stopping: the job was not started")
            child.start()
            self._running.add(child)

    def ended(self, child: multiprocessing.process.BaseProcess) -> None:
        with self._lock:
            self._running.discard(child)

    def stop(self) -> None:
        """End every running child (SIGTERM) and start no more."""
        with self._lock:
            self._stopped = True
            running = list(self._running)
        for child in running:
            child.terminate()


def in_child(
    handler: Handler, needs_child: NeedsChild = always, children: JobChildren | None = None
) -> Handler:
    """``handler`` run in a spawned child for the jobs whose params ``needs_child`` picks
    (the others run in this process), tracked in ``children`` if given. ``handler`` must
    pickle: a module-level function or a ``functools.partial`` of one."""
    tracked = children if children is not None else JobChildren()

    def run(store: Store, collection: str, params: dict[str, Any], progress: Progress) -> Any:
        if not needs_child(params):
            return handler(store, collection, params, progress)
        return run_in_child(handler, store.url, collection, params, progress, tracked)

    return run


def run_in_child(
    handler: Handler,
    url: str,
    collection: str,
    params: dict[str, Any],
    progress: Progress,
    children: JobChildren,
) -> Any:
    """Run ``handler`` in a spawned child on the store at ``url``; its result, or its error."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_child_main,
        args=(handler, url, collection, params, send),
        name=f"job-{collection}",
        daemon=True,  # ended with this process at exit, never left behind
    )
    try:
        children.start(child)
        send.close()  # the child holds the only writer: its exit reads as end of file here
        outcome = _relay(receive, progress)
    finally:
        send.close()  # (closing twice is harmless)
        receive.close()  # a child still sending gets a broken pipe and ends
        children.ended(child)
    if outcome is None:
        child.join()
        raise ChildDied(
            f"the job's child process (pid {child.pid}) ended with exit code "
            f"{child.exitcode} before reporting an outcome"
        )
    # The outcome is in: the job is recorded now, not once the child's interpreter (and
    # torch) has shut down, which takes long enough for a reader to see a router published
    # by a job still running. The child is reaped aside.
    threading.Thread(target=child.join, name="reap-job-child", daemon=True).start()
    kind, value = outcome
    if kind == _FAILED:
        raise value
    return value


def _relay(receive: Connection, progress: Progress) -> tuple[str, Any] | None:
    """Pass progress on until the outcome arrives; None if the child ended without one."""
    while True:
        try:
            kind, value = receive.recv()
        except EOFError:
            return None
        if kind == _PROGRESS:
            progress(value)
        else:
            return kind, value


def _child_main(
    handler: Handler, url: str, collection: str, params: dict[str, Any], send: Connection
) -> None:
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    store = Store(url)
    try:
        result = handler(store, collection, params, lambda f: send.send((_PROGRESS, f)))
    except Exception as exc:
        exc.add_note(f"in the job's child process:\n{traceback.format_exc()}")
        send.send((_FAILED, _portable(exc)))
    else:
        send.send((_SUCCEEDED, result))
    finally:
        send.close()
        store.engine.dispose()


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()  # returns once the parent's end of the spawn pipe closes: it exited
        os._exit(1)


def _portable(exc: Exception) -> Exception:
    """``exc`` itself if it pickles (type, message and ``permanent`` survive), else a
    ChildFailed that keeps its name, message and ``permanent``."""
    try:
        pickle.dumps(exc)
    except Exception:
        failed = ChildFailed(f"{type(exc).__name__}: {exc}", getattr(exc, "permanent", False))
        for note in getattr(exc, "__notes__", ()):
            failed.add_note(note)
        return failed
    return exc
