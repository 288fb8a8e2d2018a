"""Joining a Ray cluster (or starting a local one): the only place that calls ``ray.init``.

``local`` starts Ray inside this process for trying it out, bound to loopback with no
dashboard; any other value is the address of a running cluster (``ray start --head``), whose
nodes chose their own addresses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

LOCAL = "local"
# Read by Ray when it is imported: its nodes then take 127.0.0.1 as their address instead of
# the interface that routes outwards.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
NAMESPACE = "vecroute"
# How long a task run on every node (``on_every_node``) may take on one.
NODE_TASK_TIMEOUT_S = 30.0

log = logging.getLogger(__name__)


def bind_loopback() -> None:
    """Before ray is imported: every Ray process started from here binds 127.0.0.1."""
    os.environ.update(LOOPBACK_ENV)


def connect(address: str, temp_dir: Path | None = None) -> None:
    """Join the cluster at ``address`` (``local``: start one in this process)."""
    if address == LOCAL:
        bind_loopback()
    import ray  # the optional extra: imported only once a cluster is asked for

    if ray.is_initialized():
        return
    if address == LOCAL:
        ray.init(
            address=LOCAL,  # a new instance: never one that `ray start` left on this machine
            namespace=NAMESPACE,
            include_dashboard=False,
            _temp_dir=str(temp_dir) if temp_dir is not None else None,
            log_to_driver=False,
        )
    else:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)


def alive_nodes() -> list[str]:
    """Node ids of the cluster's live nodes, in a stable order (for spreading replicas)."""
    import ray

    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))


def on_every_node(fn: Callable[..., object], *args: object) -> None:
    """Run ``fn(*args)`` once on each live node, for what a node keeps on its own disk; a
    node that fails or does not answer within ``NODE_TASK_TIMEOUT_S`` is logged, skipped."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0, max_retries=0)(fn)
    refs = {
        node: task.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
        ).remote(*args)
        for node in alive_nodes()
    }
    ray.wait(list(refs.values()), num_returns=len(refs), timeout=NODE_TASK_TIMEOUT_S)
    for node, ref in refs.items():
        try:
            ray.get(ref, timeout=0)
        except Exception as exc:  # the node went, or the task failed there: logged
            log.warning(
                "a task on a node failed",
                extra={"node": node, "task": fn.__name__, "error": str(exc)},
            )


def disconnect() -> None:
    import ray

    ray.shutdown()
