"""Ray is an optional extra: serving without a cluster address never imports it."""

from __future__ import annotations

import subprocess
import sys


def test_serving_and_the_ray_free_cluster_modules_never_import_ray() -> None:
    code = (
        "import sys, app.main, app.cli, app.cluster.shard, app.cluster.merge, "
        "app.cluster.placement, app.cluster.replica, app.cluster.ray_runtime\n"
        "sys.exit('ray' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
