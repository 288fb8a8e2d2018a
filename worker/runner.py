"""A job loop: claim a job, run its handler with a heartbeat, record the outcome.

``worker.Worker`` runs one, embedded in ``vecroute serve`` or alone in ``vecroute worker``;
handlers are passed in by job kind.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from app.store import jobs
from app.store.db import Store
from app.store.outage import OutageLog

log = logging.getLogger(__name__)

Handler = Callable[[Store, str, dict[str, Any], Callable[[float], None]], Any]
# Told of every finished job: (kind, outcome "succeeded" | "failed", seconds).
JobListener = Callable[[str, str, float], None]


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobRunner:
    def __init__(
        self,
        store: Store,
        handlers: Mapping[str, Handler],
        *,
        lease_s: float,
        poll_s: float,
    ) -> None:
        self.store = store
        self.handlers = dict(handlers)
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.worker_id = new_worker_id()
        self._stop = threading.Event()
        self.wake = threading.Event()
        self.listeners: list[JobListener] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def run_forever(self) -> None:
        outage = OutageLog(log, "job loop")
        while not self._stop.is_set():
            ran = False
            with outage.attempt():
                ran = self.run_once()
            if not ran:
                self.wake.wait(self.poll_s)
                self.wake.clear()

    def run_once(self) -> bool:
        """Claim and run one job; False if there was none."""
        job = jobs.claim(self.store, self.worker_id, list(self.handlers), lease_s=self.lease_s)
        if job is None:
            return False
        log.info("job started", extra={"job_id": job.id, "kind": job.kind})
        progress_seen: list[float] = [0.0]
        beating = threading.Event()

        def progress(value: float) -> None:
            progress_seen[0] = value

        def beat() -> None:
            outage = OutageLog(log, f"heartbeat of job {job.id}")
            while not beating.wait(max(self.lease_s / 3, 0.05)):
                # A missed beat must not end the thread: the store may be back before the
                # lease runs out, and the job can still finish here.
                with outage.attempt():
                    jobs.heartbeat(
                        self.store,
                        job.id,
                        self.worker_id,
                        lease_s=self.lease_s,
                        progress=progress_seen[0],
                    )

        heart = threading.Thread(target=beat, name=f"heartbeat-{job.id[:8]}", daemon=True)
        heart.start()
        started = time.perf_counter()
        try:
            result = self.handlers[job.kind](self.store, job.collection or "", job.params, progress)
        except Exception as exc:
            beating.set()
            heart.join()
            log.exception("job failed", extra={"job_id": job.id})
            # A handler marks errors that retrying cannot fix with ``permanent = True``.
            retry = not getattr(exc, "permanent", False)
            error = f"{type(exc).__name__}: {exc}"
            jobs.fail(self.store, job.id, self.worker_id, error, retry=retry)
            outcome = jobs.FAILED
        else:
            beating.set()
            heart.join()
            jobs.finish(self.store, job.id, self.worker_id, result)
            log.info("job succeeded", extra={"job_id": job.id})
            outcome = jobs.SUCCEEDED
        for listener in self.listeners:
            listener(job.kind, outcome, time.perf_counter() - started)
        return True
