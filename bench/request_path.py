"""Where a single search's time goes (``bench/http.py --breakdown``).

Rows, measured in interleaved rounds (each round runs every row once, in a rotating order,
so that background load on a shared machine hits every row alike):

- ``/healthz`` and ``/search`` through three callers, all keep-alive with pre-encoded
  bodies and no response parsing: a raw socket (about 10 us of client work), an
  ``httpx.Client`` and a ``requests.Session``; and through the shipped client
  (``vecroute_client.VecrouteClient``), which encodes each query and returns typed results,
  as its users call it;
- the engine in-process (``VectorIndex.search`` on one thread, as the server runs a small
  search on its event loop), back to back and paced (``Paced``: each call after a
  ``/healthz`` round trip, an idle wait as the server's between requests), and beside them
  the engine's time inside the server, read from the ``Server-Timing`` header of the raw
  socket's ``/search`` responses;
- PostgreSQL + pgvector HNSW over one psycopg connection (prepared statement, pre-encoded
  vector text) at the smallest ``hnsw.ef_search`` reaching the IVF's recall.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import psycopg
import requests
from psycopg import sql
from vecroute_client import VecrouteClient

from app.engine.evaluation import recall_at_k

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
EF_SEARCH = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256)
PGVECTOR_HELP = (
    "pgvector is not in Debian bookworm's apt: build its release against the server "
    "headers (apt-get install postgresql-server-dev-15; make && make install in the "
    "pgvector source; https://github.com/pgvector/pgvector#installation)"
)

Call = Callable[[int], Any]  # performs request i


@dataclass(frozen=True)
class Paced:
    """A call timed as a server makes it: after an idle wait. A server's core idles between
    two requests of a keep-alive caller, for the round trip, and code run after an idle
    wait is slower here: the engine alone took 0.22 ms back to back and 0.26-0.30 ms after
    sleeping 100-300 us (a Firecracker VM whose idle vCPU halts at once). ``pace`` (not
    timed) blocks this thread on such a round trip first."""

    pace: Call
    call: Call

    def __call__(self, i: int) -> Any:
        self.pace(i)
        return self.call(i)


def interleaved(
    rows: dict[str, Call | Paced], rounds: int, per_round: int
) -> dict[str, dict[str, Any]]:
    """p50/p99 over every request of a row, and its per-round medians (``round_p50_ms``,
    for differences between rows taken round by round, which the machine's drift over a
    run leaves alone)."""
    names = list(rows)
    latencies: dict[str, list[float]] = {n: [] for n in names}
    medians: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            row, mine = rows[name], []
            pace, call = (row.pace, row.call) if isinstance(row, Paced) else (None, row)
            for j in range(per_round):
                if pace is not None:
                    pace(r * per_round + j)
                t = time.perf_counter()
                call(r * per_round + j)
                mine.append(time.perf_counter() - t)
            latencies[name] += mine
            medians[name].append(float(np.median(mine)))
    out = {}
    for name in names:
        ms = np.asarray(latencies[name]) * 1e3
        out[name] = {
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "round_p50_min_ms": min(medians[name]) * 1e3,
            "round_p50_max_ms": max(medians[name]) * 1e3,
            "round_p50_ms": [m * 1e3 for m in medians[name]],
            "requests": len(ms),
        }
    return out


def server_side_ms(before: bytes, after: bytes) -> dict[str, float]:
    """Mean ms per 200 response of ``/healthz`` and ``/search`` between two ``/metrics``
    scrapes, as the server timed them inside its middleware (every caller's requests)."""

    def totals(text: bytes, route: str) -> tuple[float, float]:
        found = []
        for part in ("sum", "count"):
            labels = rf'\{{method="\w+",route="{route}",status="200"\}}'
            pattern = rf"vecroute_http_request_seconds_{part}{labels} (\S+)"
            match = re.search(pattern, text.decode())
            found.append(float(match.group(1)) if match else 0.0)
        return found[0], found[1]

    out = {}
    for route in ("/healthz", "/search"):
        (s0, n0), (s1, n1) = totals(before, route), totals(after, route)
        out[route] = (s1 - s0) / (n1 - n0) * 1e3 if n1 > n0 else float("nan")
    return out


def engine_ms(heads: list[bytes]) -> list[float]:
    """The engine's time inside the server, from each response's ``Server-Timing`` header."""
    found = (_SERVER_TIMING.search(head) for head in heads)
    return [float(m.group(1)) for m in found if m is not None]


_SERVER_TIMING = re.compile(rb"(?i)\r\nserver-timing: *engine;dur=([0-9.]+)")


def http_rows(
    port: int, raw: Any, encode: Callable[..., bytes], bodies: list[bytes], heads: list[bytes]
) -> tuple[dict[str, Call], Callable[[], None]]:
    """``/healthz`` and ``/search`` rows for the three callers; and a closer.

    The raw socket's ``/search`` responses keep their heads in ``heads`` (for ``engine_ms``).
    """
    base = f"http://127.0.0.1:{port}"
    json_type = {"content-type": "application/json"}
    hx = httpx.Client(base_url=base)
    rq = requests.Session()
    healthz = encode("GET", "/healthz")
    searches = [encode("POST", "/search", b) for b in bodies]
    n = len(bodies)

    def ok(status: int) -> None:
        if status != 200:
            raise RuntimeError(f"HTTP {status}")

    def raw_search(i: int) -> None:
        ok(raw.request(searches[i % n])[0])
        heads.append(raw.head)

    rows: dict[str, Call] = {
        "raw socket /healthz": lambda i: ok(raw.request(healthz)[0]),
        "raw socket /search": raw_search,
        "httpx /healthz": lambda i: ok(hx.get("/healthz").status_code),
        "httpx /search": lambda i: ok(
            hx.post("/search", content=bodies[i % n], headers=json_type).status_code
        ),
        "requests /healthz": lambda i: ok(rq.get(f"{base}/healthz").status_code),
        "requests /search": lambda i: ok(
            rq.post(f"{base}/search", data=bodies[i % n], headers=json_type).status_code
        ),
    }

    def close() -> None:
        hx.close()
        rq.close()

    return rows, close


def client_rows(
    port: int, collection: str, queries: np.ndarray, k: int, options: dict[str, Any]
) -> tuple[dict[str, Call], Callable[[], None]]:
    """``/healthz`` and ``/search`` through the shipped client (``queries[i]`` as a numpy
    vector, ``options`` as search keywords); and a closer."""
    client = VecrouteClient(f"http://127.0.0.1:{port}")
    n = len(queries)
    rows: dict[str, Call] = {
        "vecroute_client /healthz": lambda i: client.healthz(),
        "vecroute_client /search": lambda i: client.search(
            collection, queries[i % n], k=k, **options
        ),
    }
    return rows, client.close


@contextmanager
def pgvector_table(url: str, docs: np.ndarray) -> Iterator[tuple[psycopg.Connection, float]]:
    """A scratch database holding ``docs`` under an HNSW cosine index: (connection, build s).

    Raises ``RuntimeError`` saying why when pgvector is not installed.
    """
    name = f"vecroute_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        conn = psycopg.connect(url, dbname=name, autocommit=True)
        try:
            try:
                conn.execute("CREATE EXTENSION vector")
            except psycopg.Error as exc:
                reason = f"no pgvector ({exc.diag.message_primary}); {PGVECTOR_HELP}"
                raise RuntimeError(reason) from None
            conn.execute(
                f"CREATE TABLE items (id int PRIMARY KEY, embedding vector({docs.shape[1]}))"
            )
            with conn.cursor().copy("COPY items (id, embedding) FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(_binary_copy(docs))
            conn.execute("SET maintenance_work_mem = '1GB'")
            started = time.perf_counter()
            conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)")
            build_s = time.perf_counter() - started
            conn.execute("VACUUM ANALYZE items")
            yield conn, build_s
        finally:
            conn.close()
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _binary_copy(docs: np.ndarray) -> bytes:
    """PostgreSQL's binary COPY stream of (id int4, embedding vector) rows, built by numpy.

    pgvector's binary form is int16 dim, int16 unused, then dim big-endian float4.
    """
    n, dim = docs.shape
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i4"),
            ("vec_len", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("v", ">f4", (dim,)),
        ]
    )
    rows = np.zeros(n, dtype=row)
    rows["fields"], rows["id_len"], rows["id"] = 2, 4, np.arange(n)
    rows["vec_len"], rows["dim"], rows["v"] = 4 + 4 * dim, dim, docs
    header = b"PGCOPY\n\xff\r\n\0" + b"\0\0\0\0" + b"\0\0\0\0"
    return header + rows.tobytes() + b"\xff\xff"


def pgvector_search(conn: psycopg.Connection) -> Callable[[str], list[int]]:
    """Top-10 ids of a pre-encoded vector literal, through a prepared statement."""
    query = "SELECT id FROM items ORDER BY embedding <=> %s::vector LIMIT 10"
    cur = conn.cursor()

    def search(vector: str) -> list[int]:
        cur.execute(query, (vector,), prepare=True)
        return [r[0] for r in cur.fetchall()]

    return search


def vector_literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in v.tolist()) + "]"


def ef_search_for(
    conn: psycopg.Connection, queries: np.ndarray, gt: np.ndarray, recall: float
) -> tuple[int, dict[int, float]]:
    """The smallest ``hnsw.ef_search`` of ``EF_SEARCH`` whose recall@10 reaches ``recall``."""
    search = pgvector_search(conn)
    literals = [vector_literal(q) for q in queries]
    sweep: dict[int, float] = {}
    for ef in EF_SEARCH:
        conn.execute(f"SET hnsw.ef_search = {ef}")
        found = np.full((len(literals), 10), -1, dtype=np.int64)
        for i, v in enumerate(literals):
            ids = search(v)
            found[i, : len(ids)] = ids
        sweep[ef] = recall_at_k(found, gt, 10)
        if sweep[ef] >= recall:
            return ef, sweep
    return EF_SEARCH[-1], sweep
