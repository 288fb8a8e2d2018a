"""``vecroute serve | worker | migrate``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

import orjson

from app.settings import Settings

# Fields every log record carries; anything else passed with ``extra=`` is added as is.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    # Before faiss loads: idle OpenMP threads sleep instead of spinning on the cores the
    # event loop needs (uvicorn picks uvloop and httptools, installed by uvicorn[standard]).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from app.main import create_app

    if args.no_worker:
        settings = settings.model_copy(update={"embedded_worker": False})
    app = create_app(settings)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)


def _worker(_: argparse.Namespace, settings: Settings) -> None:
    from app.store.db import Store
    from app.store.migrate import upgrade
    from worker.worker import Worker

    store = Store(settings.resolved_database_url)
    upgrade(store)
    worker = Worker(settings, store)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    logging.getLogger(__name__).info("worker started", extra={"worker_id": worker.worker_id})
    stop.wait()
    worker.stop()
    store.dispose()


def _migrate(_: argparse.Namespace, settings: Settings) -> None:
    from app.store.db import Store
    from app.store.migrate import current_revision, upgrade

    store = Store(settings.resolved_database_url)
    upgrade(store)
    print(f"schema at revision {current_revision(store)}")
    store.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vecroute", description="vector search service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API (with the worker embedded)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="do not run jobs in-process")
    serve.set_defaults(run=_serve)
    sub.add_parser("worker", help="run the job worker alone").set_defaults(run=_worker)
    sub.add_parser("migrate", help="create or upgrade the schema").set_defaults(run=_migrate)
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level)
    args.run(args, settings)


if __name__ == "__main__":
    main()
