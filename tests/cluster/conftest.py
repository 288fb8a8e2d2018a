"""A local Ray cluster for the cluster tests: three nodes of 1 CPU on one machine.

Ray reads its loopback switch when it is imported, so it is set here, before any test
module of this directory imports ray.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from app.cluster import ray_runtime

ray_runtime.bind_loopback()

NODES = 3


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[object]:
    """Started once per module (seconds): loopback only, no dashboard, Ray's files in a
    fresh directory that is removed afterwards (short: its socket paths must fit 107 bytes)."""
    import ray
    from ray.cluster_utils import Cluster  # after bind_loopback, as every ray import here

    root = tempfile.mkdtemp(prefix="vr-ray-")
    temp_dir = os.path.join(root, "ray")
    os.makedirs(temp_dir)
    os.environ["RAY_TMPDIR"] = root  # where Ray notes the current cluster's address
    head = {"num_cpus": 1, "include_dashboard": False, "temp_dir": temp_dir}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    for _ in range(NODES - 1):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, namespace=ray_runtime.NAMESPACE, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    del os.environ["RAY_TMPDIR"]
    shutil.rmtree(root, ignore_errors=True)
