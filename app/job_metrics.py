"""Job durations and outcomes as a Prometheus histogram, fed by the job runner.

The API's registry holds one for its embedded worker; ``vecroute worker --metrics-port``
serves one of its own, since a worker alone has no HTTP API to scrape.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram


class JobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "vecroute_job_seconds",
            "Wall time of jobs run by this process, by kind and outcome",
            ["kind", "outcome"],
            registry=registry,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
        )

    def observe(self, kind: str, outcome: str, seconds: float) -> None:
        self.seconds.labels(kind, outcome).observe(seconds)
