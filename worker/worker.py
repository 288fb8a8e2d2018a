"""The worker: runs jobs (build, train-router, quantize) and schedules them by the automatic policy.

One object, embedded in ``vecroute serve`` or alone in ``vecroute worker``; several may run
on one PostgreSQL store (job claims never collide). It reads and writes only the store, so
API processes pick up what it publishes through their catch-up loop.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import Any

from app.settings import Settings
from app.store.db import Store
from app.store.outage import OutageLog
from app.store.query_log import prune_queries
from worker.build import run_build
from worker.child import JobChildren, in_child
from worker.policy import JobKind, Policy
from worker.quantize import CatalyzerBudget, run_quantize, trains_catalyzer
from worker.runner import Handler, JobListener, JobRunner
from worker.scheduler import schedule
from worker.train_emulator import run_train_emulator
from worker.train_router import Progress, TrainingPlan, run_train_router

log = logging.getLogger(__name__)


def policy_of(settings: Settings) -> Policy:
    return Policy(
        enabled=settings.auto_policy,
        build_min_points=settings.build_min_points,
        recluster_growth=settings.recluster_growth,
        recluster_shrink=settings.recluster_shrink,
        train_min_queries=settings.train_min_queries,
        retrain_min_new_queries=settings.retrain_min_new_queries,
        catalyzer_min_points=settings.catalyzer_min_points,
    )


def job_handlers(settings: Settings, children: JobChildren) -> dict[str, Handler]:
    """The handler of every job kind; those that train with torch run in a child process
    (worker/child.py, tracked in ``children``), so that torch never enters this one (the
    API's, when embedded)."""
    plan = TrainingPlan(
        max_queries=settings.query_log_retention,
        min_queries=settings.train_min_queries,
        default_nprobe=settings.default_nprobe,
    )
    return {
        JobKind.BUILD.value: run_build,
        JobKind.TRAIN_ROUTER.value: in_child(partial(_train, plan=plan), children=children),
        JobKind.QUANTIZE.value: in_child(
            partial(
                run_quantize,
                budget=CatalyzerBudget(
                    min_points=settings.catalyzer_min_points,
                    epochs=settings.catalyzer_epochs,
                    hidden=settings.catalyzer_hidden,
                ),
            ),
            trains_catalyzer,
            children,
        ),
    }


def _train(
    store: Store, collection: str, params: dict[str, Any], progress: Progress, plan: TrainingPlan
) -> dict[str, Any]:
    """A train-router job: a learned router, or with ``"kind": "emulator"`` paper 002's."""
    run = run_train_emulator if params.get("kind") == "emulator" else run_train_router
    return run(store, collection, params, progress, plan)


class Worker:
    """Job runner plus a scheduling loop (policy and query-log retention)."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.policy = policy_of(settings)
        self.children = JobChildren()
        self.runner = JobRunner(
            store,
            job_handlers(settings, self.children),
            lease_s=settings.job_lease_s,
            poll_s=settings.worker_poll_s,
        )
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None

    @property
    def worker_id(self) -> str:
        return self.runner.worker_id

    def start(self) -> None:
        self.runner.start()
        self._scheduler = threading.Thread(
            target=self._schedule_loop, name="scheduler", daemon=True
        )
        self._scheduler.start()

    def stop(self) -> None:
        """Stop scheduling and claiming; a running torch job's child is ended, and its job
        goes back to the queue."""
        self._stop.set()
        self.children.stop()
        self.runner.stop()
        if self._scheduler is not None:
            self._scheduler.join(timeout=30)

    def add_job_listener(self, listener: JobListener) -> None:
        """Be told of every job this worker finishes (metrics)."""
        self.runner.listeners.append(listener)

    def wake(self) -> None:
        """Look for work now (e.g. after a write or an enqueue), not at the next poll."""
        self.runner.wake.set()

    def schedule_once(self) -> int:
        """Enqueue what the policy says is due and apply query-log retention."""
        enqueued = schedule(self.store, self.policy, max_attempts=self.settings.job_max_attempts)
        prune_queries(self.store, keep=self.settings.query_log_retention)
        if enqueued:
            self.wake()
        return len(enqueued)

    def _schedule_loop(self) -> None:
        outage = OutageLog(log, "scheduling")
        while not self._stop.wait(self.settings.schedule_interval_s):
            with outage.attempt():
                self.schedule_once()
