"""Load test: many loopback clients on one ``vecroute serve``, mixed searches and writes.

A real server (SQLite, embedded worker) is filled with a slice of the shared data and
clustered; then ``--clients`` threads, each with its own keep-alive connection, send
single ``/search`` requests (logged, as users' searches are) and ``/index`` batches that
replace points of a fixed pool (so the data does not grow and memory has a reason to
stay flat), in the ``--search-share`` proportion, until ``--seconds`` pass or
``--max-requests`` are sent. Loopback only; every loop is bounded in time and count.

Reported: throughput, p50/p99/max latency per kind, errors (any non-200 or connection
error; must be 0) and the server's resident memory sampled every second, which must level
off: growth over the second half of the run stays under 5% (or 16 MB).

    .venv/bin/python bench/load.py                  # 32 clients, 60 s, 20,000 documents
    .venv/bin/python bench/load.py --quick          # 16 clients, 10 s, 5,000 documents
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

# bench/http.py would shadow the standard library's http: the repository root goes first.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import debian
from bench.http import NAME, RawClient, Server, build, encode, ingest, search_body, stats

RESULTS = Path(__file__).resolve().parent / "results"
WRITE_BATCH = 10
WRITE_POOL = 5000  # ids the writers replace, so the collection keeps its size
RSS_GROWTH_LIMIT = 0.05
RSS_GROWTH_FLOOR_MB = 16.0


@dataclass
class ClientLog:
    search_s: list[float] = field(default_factory=list)
    index_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def index_request(rng: np.random.Generator, docs: np.ndarray) -> bytes:
    rows = rng.integers(0, len(docs), WRITE_BATCH)
    ids = rng.integers(0, WRITE_POOL, WRITE_BATCH)
    points = [
        {"id": f"load-{i}", "vector": docs[r], "payload": {"n": int(i)}}
        for i, r in zip(ids, rows, strict=True)
    ]
    body = orjson.dumps({"collection": NAME, "points": points}, option=orjson.OPT_SERIALIZE_NUMPY)
    return encode("POST", "/index", body)


def client_loop(
    port: int,
    seed: int,
    docs: np.ndarray,
    queries: np.ndarray,
    search_share: float,
    deadline: float,
    max_requests: int,
    log: ClientLog,
) -> None:
    rng = np.random.default_rng(seed)
    client = RawClient(port)
    try:
        for _ in range(max_requests):
            if time.monotonic() >= deadline:
                break
            searching = rng.random() < search_share
            raw = (
                search_body(queries[rng.integers(len(queries))], None)
                if searching
                else index_request(rng, docs)
            )
            started = time.perf_counter()
            try:
                status, body = client.request(raw)
            except OSError as exc:
                log.errors.append(f"{type(exc).__name__}: {exc}")
                client.close()
                client = RawClient(port)
                continue
            elapsed = time.perf_counter() - started
            if status != 200:
                log.errors.append(f"{status}: {body[:200]!r}")
            (log.search_s if searching else log.index_s).append(elapsed)
    finally:
        client.close()


def sample_rss(pid: int, stop: threading.Event, out: list[tuple[float, float]]) -> None:
    started = time.monotonic()
    while not stop.wait(1.0):
        out.append((time.monotonic() - started, rss_mb(pid)))


def levels_off(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """Growth from the middle of the run to its end, against the limit."""
    rss = [mb for _, mb in samples]
    mid, end = rss[len(rss) // 2], rss[-1]
    growth = end - mid
    limit = max(RSS_GROWTH_LIMIT * mid, RSS_GROWTH_FLOOR_MB)
    return {
        "start_mb": rss[0],
        "mid_mb": mid,
        "end_mb": end,
        "max_mb": max(rss),
        "second_half_growth_mb": growth,
        "limit_mb": limit,
        "levels_off": growth <= limit,
    }


def prepare(server: Server, data: debian.Dataset) -> dict[str, Any]:
    client = RawClient(server.port)
    try:
        client.json(
            "POST",
            "/collections",
            {"name": NAME, "dim": data.docs.shape[1], "metric": "cosine"},
            expect=201,
        )
        ingest(client, data.docs)
        return build(client)["info"]["index"]
    finally:
        client.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = debian.load("cos", n_docs=args.n_docs, n_train=0, n_test=1000)
    with tempfile.TemporaryDirectory(prefix="vecroute-load-") as tmp:
        server = Server(Path(tmp))
        server.start()
        try:
            index = prepare(server, data)
            assert server.proc is not None
            logs = [ClientLog() for _ in range(args.clients)]
            samples: list[tuple[float, float]] = [(0.0, rss_mb(server.proc.pid))]
            stop = threading.Event()
            sampler = threading.Thread(
                target=sample_rss, args=(server.proc.pid, stop, samples), daemon=True
            )
            deadline = time.monotonic() + args.seconds
            per_client = max(1, args.max_requests // args.clients)
            threads = [
                threading.Thread(
                    target=client_loop,
                    args=(
                        server.port,
                        c,
                        data.docs,
                        data.test_queries,
                        args.search_share,
                        deadline,
                        per_client,
                        logs[c],
                    ),
                )
                for c in range(args.clients)
            ]
            started = time.perf_counter()
            sampler.start()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
            stop.set()
            sampler.join()
            samples.append((wall, rss_mb(server.proc.pid)))
        finally:
            server.stop()
    searches = [x for log in logs for x in log.search_s]
    writes = [x for log in logs for x in log.index_s]
    errors = [e for log in logs for e in log.errors]
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {
            "clients": args.clients,
            "seconds": args.seconds,
            "search_share": args.search_share,
            "n_docs": len(data.docs),
            "write_batch": WRITE_BATCH,
            "index": index,
        },
        "wall_s": wall,
        "requests_per_s": (len(searches) + len(writes)) / wall,
        "search": stats(searches, len(searches), wall) if searches else None,
        "index": stats(writes, len(writes) * WRITE_BATCH, wall) if writes else None,
        "errors": len(errors),
        "error_samples": errors[:10],
        "rss": levels_off(samples),
        "rss_samples": samples,
    }


def table(out: dict[str, Any]) -> str:
    lines = [
        f"{out['config']['clients']} clients, {out['wall_s']:.0f} s, "
        f"{out['config']['search_share']:.0%} search, {out['config']['n_docs']} documents "
        f"(index {out['config']['index']['state']}, nlist {out['config']['index']['nlist']})",
        f"{'kind':<8}{'requests':>10}{'per s':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}",
    ]
    for kind in ("search", "index"):
        s = out[kind]
        if s is not None:
            lines.append(
                f"{kind:<8}{s['requests']:>10}{s['requests'] / out['wall_s']:>10.1f}"
                f"{s['p50_ms']:>10.2f}{s['p99_ms']:>10.2f}{s['max_ms']:>10.2f}"
            )
    r = out["rss"]
    lines += [
        f"total {out['requests_per_s']:.1f} requests/s; errors: {out['errors']}",
        f"server RSS MB: start {r['start_mb']:.0f}, mid {r['mid_mb']:.0f}, end {r['end_mb']:.0f}, "
        f"max {r['max_mb']:.0f}; second-half growth {r['second_half_growth_mb']:+.1f} MB "
        f"(limit {r['limit_mb']:.0f}): {'levels off' if r['levels_off'] else 'STILL GROWING'}",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--search-share", type=float, default=0.9)
    p.add_argument("--n-docs", type=int, default=20_000)
    p.add_argument("--max-requests", type=int, default=2_000_000, help="bound on all clients")
    p.add_argument("--quick", action="store_true", help="16 clients, 10 s, 5,000 documents")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.seconds, args.n_docs = 16, 10.0, 5000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = run(args)
    print(table(out))
    path = args.out or RESULTS / ("load_quick.json" if args.quick else "load.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0 if out["errors"] == 0 and out["rss"]["levels_off"] else 1


if __name__ == "__main__":
    sys.exit(main())
