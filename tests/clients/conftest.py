"""One real server per backend for all the client tests (Python, LangChain, TypeScript):
they keep apart by using collections of their own."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.databases import postgres_database
from tests.api.servers import ROOT, Server


@pytest.fixture(scope="package", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp(f"clients-{request.param}")
    with database(request.param, root) as url:
        # A search that waits for a sequence number this server never reaches (the tour
        # checks it) gives up after half a second.
        s = Server(
            url, root / "data", VECROUTE_WORKER_POLL_S="0.05", VECROUTE_MIN_SEQ_TIMEOUT_S="0.5"
        )
        try:
            yield s.start()
        finally:
            s.stop()


def readme_example(n: int, url: str) -> str:
    """The n-th Python block of the README's "Clients" section, pointed at ``url``."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Clients\n") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    return blocks[n].replace("http://127.0.0.1:8000", url)


def unique(prefix: str) -> str:
    """A collection name no other test on the shared server uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextmanager
def database(backend: str, root: Path) -> Iterator[str]:
    """A SQLite file, or a PostgreSQL database of this server's own (dropped afterwards)."""
    if backend == "sqlite":
        yield f"sqlite:///{root / 'store.db'}"
        return
    with postgres_database("vecroute_clients") as url:
        yield url
