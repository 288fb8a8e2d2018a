"""The coordinator's side of a sharded collection: the replica actors of every shard, a
scatter of each search to the shards its probes touch, and the merge of their top-k.

Imported only once Ray is connected (``ray_runtime.connect``). Replicas run as Ray actors
(``ShardReplica``), restarted by Ray when their process dies (``max_restarts=-1``); a
restarted actor rebuilds itself from the store. Replicas of one shard are placed on
distinct nodes where there are enough (soft node affinity: Ray may move them when a node
goes).

Failover: a search goes to one ready replica per touched shard (round robin); a replica
that fails or times out is marked ``loading`` and the shard's next ready replica answers
the same request, so a lost process costs a retry, never a failed search. A recovery
thread polls the lost replica until it answers again (rebuilt), then marks it ``ready``.
A shard without a ready replica fails the search (``ShardUnavailable``) unless the caller
accepts partial results, which then name the missing shards.

Ray restarts a dead actor process in place; an actor gone for good (its restarts used up,
its node removed with it) is replaced by a new one, placed by Ray.

Locks: ``_lock`` (and ``_changed``, a Condition on it) guards the replicas' states, handles
and the round-robin counters; Ray calls are made outside it. Threads: one recovery thread
per lost replica, one health thread per shard set.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import ray
from ray.exceptions import (
    ActorDiedError,
    ActorUnschedulableError,
    GetTimeoutError,
    RayActorError,
)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from app.cluster.merge import merge_topk, shards_touched
from app.cluster.placement import Placement
from app.cluster.replica import ShardReplica, ShardSpec
from app.cluster.shard import ShardHits

log = logging.getLogger(__name__)

READY = "ready"
LOADING = "loading"
# How often a lost replica is asked whether it is back (rebuilt from the store).
RECOVERY_POLL_S = 0.2
# A replica that raised these did not answer (dead, restarting, unplaceable or too slow).
NO_ANSWER = (RayActorError, ActorUnschedulableError, GetTimeoutError)
# ... and these mean it will never answer again: its slot needs a new actor.
GONE = (ActorDiedError, ActorUnschedulableError)
# How often ready replicas are pinged, so a death nobody searched into still shows.
HEALTH_INTERVAL_S = 1.0


class ShardUnavailable(RuntimeError):
    """No replica of a shard answers: the search would be silently short."""

    def __init__(self, shard: int) -> None:
        super().__init__(f"shard {shard} has no live replica")
        self.shard = shard


class NodeReplica(ShardReplica):
    """A ``ShardReplica`` that knows the Ray node it runs on (reported in collection info)."""

    def __init__(self, spec: ShardSpec) -> None:
        super().__init__(spec, ray.get_runtime_context().get_node_id())


_ReplicaActor: Any = ray.remote(NodeReplica)


@dataclass
class Replica:
    """One actor of one shard, as the coordinator sees it."""

    shard: int
    slot: int
    handle: Any
    state: str = LOADING
    node: str = ""
    pid: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardedHits:
    scores: np.ndarray  # (n, k), best first
    ids: np.ndarray  # (n, k)
    scanned: float  # vectors scored per query (mean over the batch)
    shards_probed: float  # distinct shards per query (mean)
    touched: np.ndarray  # (n,) distinct shards of each query
    missing: tuple[int, ...] = ()  # shards left out (only when partial results were asked for)
    candidates: float = 0.0  # code candidates re-scored per query, summed over the shards


class ShardSet:
    """The replicas of one collection's shards under one placement (one epoch)."""

    def __init__(
        self,
        spec: ShardSpec,
        placement: Placement,
        replicas: int,
        nodes: Sequence[str],
        *,
        search_timeout_s: float = 10.0,
    ) -> None:
        """Start ``replicas`` actors per shard; ``spec`` is the collection's (its shard and
        lists are filled in per shard); ``nodes`` the live node ids to spread them over."""
        if replicas < 1:
            raise ValueError("replicas must be at least 1")
        self.placement = placement
        self.epoch = placement.epoch
        self.search_timeout_s = search_timeout_s
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._inflight = 0  # searches entered and not left (drain waits for zero)
        self._turn = [itertools.count() for _ in range(placement.shards)]
        self._closed = threading.Event()
        self._specs = [
            replace(spec, shard=s, lists=tuple(placement.lists_of(s).tolist()), epoch=self.epoch)
            for s in range(placement.shards)
        ]
        self.replicas: list[list[Replica]] = []
        for s, shard_spec in enumerate(self._specs):
            row = []
            for r in range(replicas):
                node = nodes[(s + r) % len(nodes)] if nodes else None
                row.append(Replica(s, r, _start(shard_spec, node)))
            self.replicas.append(row)
        for row in self.replicas:
            for replica in row:
                self._recover(replica)
        threading.Thread(target=self._watch, name="shard-health", daemon=True).start()

    # -- health -----------------------------------------------------------------------------

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether every replica is ready within ``timeout_s`` (start-up, tests, rebalancing)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: all(r.state == READY for row in self.replicas for r in row), timeout_s
            )

    def _watch(self) -> None:
        while not self._closed.wait(HEALTH_INTERVAL_S):
            with self._lock:
                ready = [r for row in self.replicas for r in row if r.state == READY]
            pings = [(r, r.handle.info.remote()) for r in ready]
            for replica, ref in pings:
                try:
                    info = ray.get(ref, timeout=self.search_timeout_s)
                except NO_ANSWER:
                    self._lost(replica)
                    continue
                with self._lock:
                    # Ray may have restarted it between two pings: the answer names its pid.
                    replica.info, replica.node, replica.pid = info, info["node"], info["pid"]

    def _recover(self, replica: Replica) -> None:
        """Poll ``replica`` (starting or restarting) in the background until it answers."""
        threading.Thread(
            target=self._poll_until_ready, args=(replica,), name="shard-recovery", daemon=True
        ).start()

    def _poll_until_ready(self, replica: Replica) -> None:
        while not self._closed.is_set():
            try:
                info = ray.get(replica.handle.info.remote(), timeout=self.search_timeout_s)
            except GONE:
                # Gone for good (ActorUnavailableError is the restarting case, below), e.g.
                # its node was removed: a new actor takes the slot, placed wherever Ray can.
                self._closed.wait(RECOVERY_POLL_S)
                handle = _start(self._specs[replica.shard], None)
                with self._lock:
                    replica.handle = handle
                continue
            except NO_ANSWER:  # restarting, or slow to answer
                self._closed.wait(RECOVERY_POLL_S)
                continue
            with self._changed:
                replica.info, replica.node, replica.pid = info, info["node"], info["pid"]
                replica.state = READY
                self._changed.notify_all()
            return

    def _lost(self, replica: Replica) -> None:
        with self._lock:
            if replica.state == LOADING or self._closed.is_set():
                return  # already being recovered, or being stopped
            replica.state = LOADING
        log.warning("shard replica lost", extra={"shard": replica.shard, "slot": replica.slot})
        self._recover(replica)

    def _pick(self, shard: int, tried: set[int]) -> Replica | None:
        with self._lock:
            row = self.replicas[shard]
            ready = [r for r in row if r.state == READY and r.slot not in tried]
            if not ready:
                return None
            return ready[next(self._turn[shard]) % len(ready)]

    # -- searching --------------------------------------------------------------------------

    def search(
        self,
        queries: np.ndarray,
        k: int,
        probes: np.ndarray,
        allowed: np.ndarray | None = None,
        *,
        min_seq: int = 0,
        partial: bool = False,
        rerank: int | None = None,
        exact: bool = False,
    ) -> ShardedHits:
        """Top-``k`` of raw ``queries`` over the probed lists (``probes`` (n, w), -1 padded,
        list numbers of the whole clustering), each shard searched by one of its replicas;
        code lists re-rank ``rerank`` candidates per shard (``exact``: all of them)."""
        probes = np.ascontiguousarray(probes, dtype=np.int64)
        n = len(queries)
        touched = shards_touched(probes, self.placement.shard_of)
        valid = probes[probes >= 0]
        wanted = np.unique(self.placement.shard_of[valid]).tolist()
        args = (queries, k, probes, allowed, min_seq, rerank, exact)
        pending: dict[int, tuple[Replica, Any, set[int]]] = {}
        missing: list[int] = []
        for shard in wanted:
            self._submit(shard, args, set(), pending, missing)
        parts: list[ShardHits] = []
        while pending:
            shard, (replica, ref, tried) = pending.popitem()
            try:
                parts.append(ray.get(ref, timeout=self.search_timeout_s))
            except NO_ANSWER:
                self._lost(replica)
                self._submit(shard, args, tried, pending, missing)
        if missing and not partial:
            raise ShardUnavailable(missing[0])
        scores, ids = merge_topk([(p.scores, p.ids) for p in parts], n, k)
        scanned = sum(p.scanned for p in parts) / n if n else 0.0
        candidates = sum(p.candidates for p in parts) / n if n else 0.0
        probed = float(touched.mean()) if n else 0.0
        return ShardedHits(
            scores, ids, scanned, probed, touched, tuple(sorted(missing)), candidates
        )

    def _submit(
        self,
        shard: int,
        args: tuple[Any, ...],
        tried: set[int],
        pending: dict[int, tuple[Replica, Any, set[int]]],
        missing: list[int],
    ) -> None:
        replica = self._pick(shard, tried)
        if replica is None:
            missing.append(shard)
            return
        tried.add(replica.slot)
        pending[shard] = (replica, replica.handle.search.remote(*args), tried)

    # -- describing and stopping --------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """The shards as collection info shows them (API.md, "Shards")."""
        out = []
        with self._lock:
            for s, row in enumerate(self.replicas):
                points = next((r.info["points"] for r in row if r.state == READY), 0)
                out.append(
                    {
                        "shard": s,
                        "lists": len(self._specs[s].lists),
                        "points": int(points),
                        "replicas": [
                            {"node": r.node, "pid": r.pid or 0, "state": r.state} for r in row
                        ],
                    }
                )
        return out

    def enter(self) -> None:
        """A search starts on this set (``drain_and_close`` waits for it to ``leave``)."""
        with self._lock:
            self._inflight += 1

    def leave(self) -> None:
        with self._changed:
            self._inflight -= 1
            self._changed.notify_all()

    def drain_and_close(self, timeout_s: float) -> bool:
        """Once no search is in flight (or after ``timeout_s``), stop; whether it drained."""
        with self._changed:
            drained = self._changed.wait_for(lambda: self._inflight == 0, timeout_s)
        self.close()
        return drained

    def close(self) -> None:
        """Stop the recovery threads and the actors (``drain_and_close`` drains first)."""
        self._closed.set()
        for row in self.replicas:
            for replica in row:
                ray.kill(replica.handle, no_restart=True)


def _start(spec: ShardSpec, node: str | None) -> Any:
    options: dict[str, Any] = {
        "num_cpus": 0,  # placement is ours (node affinity); CPU is shared with the node
        "max_restarts": -1,  # a dead process is restarted, and rebuilds itself from the store
        "max_task_retries": 0,  # a failed search is retried on another replica, by us
        "max_concurrency": 4,  # searches and info calls in parallel: the index has its locks
    }
    if node is not None:
        # Hard: Ray's soft affinity may put both replicas of a shard on one node. A replica
        # whose node is gone dies for good, and a new one (no node named) takes its slot.
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    return _ReplicaActor.options(**options).remote(spec)
