"""``vecroute serve | worker | migrate | import``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from app.logs import configure_logging
from app.settings import Settings

if TYPE_CHECKING:
    from worker.worker import Worker


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    # Before faiss loads: idle OpenMP threads sleep instead of spinning on the cores the
    # event loop needs (uvicorn picks uvloop and httptools, installed by uvicorn[standard]).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from app.api.protocol import InlineHttpProtocol
    from app.main import create_app

    if args.no_worker:
        settings = settings.model_copy(update={"embedded_worker": False})
    app = create_app(settings)
    if app.edge is None:
        raise RuntimeError("create_app gives the app its edge")
    http = InlineHttpProtocol.for_edge(app.edge)
    uvicorn.run(app, host=args.host, port=args.port, http=http, log_config=None, access_log=False)


def _worker(args: argparse.Namespace, settings: Settings) -> None:
    from app.store.db import Store
    from app.store.migrate import upgrade
    from worker.worker import Worker

    store = Store(settings.resolved_database_url)
    upgrade(store)
    worker = Worker(settings, store)
    if args.metrics_port is not None:
        _serve_job_metrics(worker, args.metrics_port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    logging.getLogger(__name__).info("worker started", extra={"worker_id": worker.worker_id})
    stop.wait()
    worker.stop()
    store.dispose()


def _serve_job_metrics(worker: Worker, port: int) -> None:
    """A worker alone has no HTTP API: its job histogram gets a scrape port of its own."""
    from prometheus_client import CollectorRegistry, start_http_server

    from app.job_metrics import JobMetrics

    registry = CollectorRegistry()
    worker.add_job_listener(JobMetrics(registry).observe)
    start_http_server(port, registry=registry)


def _migrate(_: argparse.Namespace, settings: Settings) -> None:
    from app.store.db import Store
    from app.store.migrate import current_revision, upgrade

    store = Store(settings.resolved_database_url)
    upgrade(store)
    print(f"schema at revision {current_revision(store)}")
    store.dispose()


def _import(args: argparse.Namespace, settings: Settings) -> None:
    from app.cli_import import import_file
    from app.service.errors import DomainError

    # Writes go straight to the store; a running API process picks them up by catch-up.
    settings = settings.model_copy(update={"embedded_worker": False})
    try:
        n = import_file(settings, args.collection, args.file, ids=args.ids, batch=args.batch)
    except DomainError as exc:  # the same message /index would answer with
        raise SystemExit(f"vecroute import: {exc.detail}") from None
    print(f"imported {n} points into {args.collection!r}")


def build_parser() -> argparse.ArgumentParser:
    """The command line; also what the deployment tests check compose commands against."""
    parser = argparse.ArgumentParser(prog="vecroute", description="vector search service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API (with the worker embedded)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="do not run jobs in-process")
    serve.set_defaults(run=_serve)
    worker = sub.add_parser("worker", help="run the job worker alone")
    worker.add_argument(
        "--metrics-port", type=int, help="serve Prometheus job metrics on this port"
    )
    worker.set_defaults(run=_worker)
    sub.add_parser("migrate", help="create or upgrade the schema").set_defaults(run=_migrate)
    load = sub.add_parser("import", help="load a .npy or JSONL file into a collection")
    load.add_argument("collection", help="an existing collection")
    load.add_argument("file", type=Path, help=".npy matrix, or .jsonl / .jsonl.gz points")
    load.add_argument("--ids", type=Path, help="ids for a .npy file (.npy or one per line)")
    load.add_argument("--batch", type=int, default=1000, help="points per store transaction")
    load.set_defaults(run=_import)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level)
    args.run(args, settings)


if __name__ == "__main__":
    main()
