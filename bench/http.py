"""HTTP benchmark: a real ``vecroute serve`` against the engine in-process, on the shared data.

One run, on one index:

- ingest throughput over ``POST /index`` (batches of 1000 points, bodies pre-encoded);
- ``POST /collections/{name}/build`` through the embedded worker (automatic policy off);
- the smallest nprobe giving recall@10 >= 0.90 against exact ground truth;
- ``/search/batch`` (100 queries) and single ``/search`` with 1 and 8 concurrent clients,
  side by side with ``VectorIndex.search`` in this process over the same clustering;
- the product's own routing: the train queries are searched (so logged), ``POST
  /train-router`` trains a linear router from the log in the embedded worker, and the
  single-search latency is measured again at the (smaller) nprobe the learned router needs
  for the same recall; recall sweeps and measurement queries are not logged, so the router
  never sees a test query;
- single-search latency while another client bulk-loads 10,000-point batches;
- restart time for the full data set after ``kill -9`` and after a graceful stop.

The latency client is a raw keep-alive socket sending pre-encoded HTTP/1.1 requests (about
10 us of client work per round trip), so the numbers are the server's, not a client
library's; ``/healthz`` over the same socket gives the floor of one round trip.

    .venv/bin/python bench/http.py                 # full data (cos), a few minutes
    .venv/bin/python bench/http.py --quick         # 15,000 documents, fewer repeats
    .venv/bin/python bench/http.py --breakdown     # where one /search's time goes (below)

``--breakdown`` runs alone: nlist 256, nprobe 8, the embedded worker's scheduler on (its
thresholds out of reach, so it reads its counters every 2 s and never starts a job), and
prints ``/healthz`` and ``/search`` through three callers, the engine in-process (back to
back, and paced as the server runs it: after an idle wait; and its time inside the server,
from the ``Server-Timing`` header) and PostgreSQL + pgvector HNSW at the same recall, side by
side (bench/request_path.py). The server runs on one core and this process on the other
(``--placement``, PLACEMENTS), so that every row pays the same wake-ups.
"""

from __future__ import annotations

import os

# Before faiss loads (bench.debian imports it): idle OpenMP threads sleep instead of
# spinning on a core the server and the clients need. The server gets the same setting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import contextlib
import json
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import orjson
import psycopg
from tqdm import tqdm

# Run as a script, bench/ would come first on sys.path and bench/http.py would shadow the
# standard library's http; the repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from app.engine.evaluation import recall_at_k
from app.engine.ivf import VectorIndex
from app.engine.metric import Metric
from app.store.collections import list_collections
from app.store.db import Store
from app.store.versions import load_clustering
from bench import debian, request_path

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "bench"
K = 10
TARGET_RECALL = 0.90
NPROBES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128)
INGEST_BATCH = 1000
# --breakdown: (server's cores, this process's cores), or None to leave it to the scheduler.
# Here a wake-up on the other, idle core costs ~35 us more than on the same one (/healthz
# p50 ~0.10 vs ~0.02 ms); left free, the scheduler puts a short request's two sides on one
# core and a long one's on two, so /healthz and /search would not pay the same wake-ups.
# "apart" places them as a client on another machine; "shared" on one core.
PLACEMENTS: dict[str, tuple[str, set[int]] | None] = {
    "apart": ("0", {1}),
    "shared": ("0", {0}),
    "free": None,
}
ENGINE = "engine in-process"
PACED_ENGINE = "engine in-process, paced"  # each call after a /healthz round trip
SEARCH_BATCH = 100
BULK_BATCH = 10_000
CLIENTS = 8


# -- a lean HTTP client -----------------------------------------------------------------------


def encode(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class RawClient:
    """Keep-alive HTTP/1.1 over a socket: send pre-encoded bytes, read one framed response."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.head = b""  # the last response's status line and headers

    def request(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += self._recv()
        head, rest = buf[:end], buf[end + 4 :]
        self.head = head
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"content-length:")
        if at < 0:
            raise RuntimeError("the response has no Content-Length")
        length = int(lower[at + 15 : lower.find(b"\r\n", at) if b"\r\n" in lower[at:] else None])
        while len(rest) < length:
            rest += self._recv()
        self.buf = rest[length:]
        return status, rest[:length]

    def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        payload = b"" if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        status, out = self.request(encode(method, path, payload))
        if status != expect:
            raise RuntimeError(f"{method} {path}: {status} {out[:300]!r}")
        return orjson.loads(out) if out else None

    def _recv(self) -> bytes:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


# -- the server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``vecroute serve`` on a free loopback port over SQLite in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VECROUTE_")}
        self.env.update(
            VECROUTE_DATA_DIR=str(data_dir),
            VECROUTE_AUTO_POLICY="false",  # builds only when asked; jobs still run in-process
            VECROUTE_LOG_LEVEL="WARNING",
            OMP_WAIT_POLICY="PASSIVE",
        )
        self.log = data_dir / "server.log"

    def start(self, timeout_s: float = 600) -> float:
        """Start and wait for ``/readyz``; returns the seconds until ready."""
        exe = Path(sys.executable).parent / "vecroute"
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(exe), "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited; see {self.log}")
            try:
                client = RawClient(self.port)
                try:
                    if client.request(encode("GET", "/readyz"))[0] == 200:
                        return time.perf_counter() - started
                finally:
                    client.close()
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server never became ready")
            time.sleep(0.01)

    def loaded(self, names: tuple[str, ...]) -> dict[str, bool]:
        """Which of these extension modules the server process has mapped (Linux)."""
        assert self.proc is not None
        maps = Path(f"/proc/{self.proc.pid}/maps")
        text = maps.read_text() if maps.exists() else ""
        return {name: name in text for name in names}

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> float:
        """SIGTERM (the service writes snapshots on the way out); returns the seconds taken."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        started = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.kill()
        return time.perf_counter() - started


# -- measurements -------------------------------------------------------------------------------


def stats(latencies_s: list[float] | np.ndarray, n_queries: int, wall_s: float) -> dict[str, float]:
    ms = np.asarray(latencies_s) * 1e3
    return {
        "qps": n_queries / wall_s,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "requests": len(ms),
    }


def timed(calls: list[Callable[[], Any]], per_call: int) -> dict[str, float]:
    latencies = []
    started = time.perf_counter()
    for call in calls:
        t = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t)
    return stats(latencies, per_call * len(calls), time.perf_counter() - started)


def concurrent(
    make_worker: Callable[[int], Callable[[], list[float]]], clients: int, n_queries: int
) -> dict[str, float]:
    """Each client thread runs its share and returns per-request latencies."""
    workers = [make_worker(c) for c in range(clients)]
    results: list[list[float]] = [[] for _ in range(clients)]

    def run(c: int) -> None:
        results[c] = workers[c]()

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return stats([x for r in results for x in r], n_queries, wall)


def search_body(
    query: np.ndarray, nprobe: int | None, routing: str = "auto", log: bool = True
) -> bytes:
    return _search_request("/search", {"vector": query}, nprobe, routing, log)


def centroid_options(nprobe: int) -> dict[str, Any]:
    """The breakdown's search options: routed by centroids at ``nprobe``."""
    return {"nprobe": nprobe, "routing": "centroid"}


def centroid_search_json(query: np.ndarray, nprobe: int) -> bytes:
    """A ``/search`` body with ``centroid_options`` (the breakdown's request)."""
    body = {"collection": NAME, "vector": query, "k": K, **centroid_options(nprobe)}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def batch_body(
    queries: np.ndarray, nprobe: int | None, routing: str = "auto", log: bool = True
) -> bytes:
    return _search_request("/search/batch", {"vectors": queries}, nprobe, routing, log)


def _search_request(
    path: str, vectors: dict[str, np.ndarray], nprobe: int | None, routing: str, log: bool
) -> bytes:
    body: dict[str, Any] = {"collection": NAME, **vectors, "k": K, "routing": routing, "log": log}
    if nprobe is not None:
        body["nprobe"] = nprobe
    return encode("POST", path, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))


def hit_rows(results: list[dict[str, Any]]) -> np.ndarray:
    out = np.full((len(results), K), -1, dtype=np.int64)
    for i, r in enumerate(results):
        ids = [int(h["id"]) for h in r["hits"]]
        out[i, : len(ids)] = ids
    return out


def http_recall(
    client: RawClient,
    queries: np.ndarray,
    gt: np.ndarray,
    nprobe: int | None,
    routing: str = "auto",
) -> float:
    found = []
    for start in range(0, len(queries), SEARCH_BATCH):
        status, body = client.request(
            batch_body(queries[start : start + SEARCH_BATCH], nprobe, routing, log=False)
        )
        assert status == 200, body
        found.append(hit_rows(orjson.loads(body)["results"]))
    return recall_at_k(np.concatenate(found), gt, K)


def ingest(
    client: RawClient,
    docs: np.ndarray,
    progress: tqdm | None = None,
    payloads: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Pre-encode every batch (timed apart), then send them one after another.

    Point ``i`` gets id ``str(i)`` and, if given, ``payloads[i]``.
    """
    started = time.perf_counter()
    bodies = []
    for start in range(0, len(docs), INGEST_BATCH):
        points = [
            {"id": str(i), "vector": docs[i]}
            if payloads is None
            else {"id": str(i), "vector": docs[i], "payload": payloads[i]}
            for i in range(start, min(start + INGEST_BATCH, len(docs)))
        ]
        bodies.append(
            encode(
                "POST",
                "/index",
                orjson.dumps(
                    {"collection": NAME, "points": points}, option=orjson.OPT_SERIALIZE_NUMPY
                ),
            )
        )
    encode_s = time.perf_counter() - started
    latencies = []
    started = time.perf_counter()
    for raw in bodies:
        t = time.perf_counter()
        status, body = client.request(raw)
        latencies.append(time.perf_counter() - t)
        assert status == 200, body
        if progress is not None:
            progress.update(1)
    out = stats(latencies, len(docs), time.perf_counter() - started)
    out["points_per_s"] = out.pop("qps")
    out["client_encode_s"] = encode_s
    out["mb_per_batch"] = len(bodies[0]) / 1e6
    return out


def finish(client: RawClient, job: str, deadline: float) -> dict[str, Any]:
    """Poll a job until it succeeds; its final state."""
    while True:
        state: dict[str, Any] = client.json("GET", f"/jobs/{job}")
        if state["status"] == "succeeded":
            return state
        if state["status"] == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"{state['kind']} job: {state}")
        time.sleep(0.2)


def build(client: RawClient, timeout_s: float = 900) -> dict[str, Any]:
    started = time.perf_counter()
    job = client.json("POST", f"/collections/{NAME}/build", expect=202)["job_id"]
    deadline = time.monotonic() + timeout_s
    finish(client, job, deadline)
    # The service applies the published clustering on its next catch-up.
    while client.json("GET", f"/collections/{NAME}")["index"]["state"] != "ivf":
        if time.monotonic() > deadline:
            raise RuntimeError("the clustering was never applied")
        time.sleep(0.05)
    return {
        "seconds": time.perf_counter() - started,
        "info": client.json("GET", f"/collections/{NAME}"),
    }


def train_learned(
    client: RawClient, queries: np.ndarray, timeout_s: float = 1800
) -> dict[str, Any]:
    """Log ``queries`` by searching them, train a linear router from the log (the embedded
    worker's job) and wait until the server routes with it, if the gate activated it."""
    started = time.perf_counter()
    for start in range(0, len(queries), SEARCH_BATCH):
        status, body = client.request(batch_body(queries[start : start + SEARCH_BATCH], None))
        assert status == 200, body
    logged_s = time.perf_counter() - started
    activated = train_router(client, time.monotonic() + timeout_s)
    return {
        "queries_logged": len(queries),
        "log_seconds": logged_s,
        "seconds": time.perf_counter() - started,
        "activated": activated,
        "router": client.json("GET", f"/collections/{NAME}")["router"],
    }


def train_router(client: RawClient, deadline: float) -> bool:
    """Train a linear router from the logged queries (the embedded worker's job) and wait
    until the server routes with it, if the gate activated it; whether it did."""
    job = client.json(
        "POST",
        "/train-router",
        {"collection": NAME, "kind": "linear", "objective": "mixed"},
        expect=202,
    )["job_id"]
    result: dict[str, Any] = finish(client, job, deadline)["result"]
    if result["activated"]:
        # The service picks up the new active router on its next catch-up.
        while client.json("GET", f"/collections/{NAME}")["router"]["version"] is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the router was never applied")
            time.sleep(0.05)
    return bool(result["activated"])


def smallest_nprobe(
    client: RawClient, queries: np.ndarray, gt: np.ndarray, routing: str
) -> tuple[int, dict[int, float]]:
    """The smallest nprobe of ``NPROBES`` reaching ``TARGET_RECALL``, and the sweep."""
    sweep = {}
    for nprobe in NPROBES:
        sweep[nprobe] = http_recall(client, queries, gt, nprobe, routing)
        if sweep[nprobe] >= TARGET_RECALL:
            return nprobe, sweep
    raise AssertionError(f"no nprobe reached recall {TARGET_RECALL} with {routing}: {sweep}")


def in_process_index(data_dir: Path, docs: np.ndarray, metric: Metric) -> VectorIndex:
    """The same clustering as the server's, read from its store, over the same vectors."""
    store = Store(f"sqlite:///{(data_dir / 'vecroute.db').resolve()}")
    try:
        with store.read() as session:
            record = next(r for r in list_collections(session) if r.name == NAME)
            assert record.clustering_version is not None
            clustering = load_clustering(session, record.id, record.clustering_version)
    finally:
        store.dispose()
    index = VectorIndex(docs.shape[1], metric, clustering)
    index.upsert(np.arange(len(docs), dtype=np.int64), docs)
    return index


def bulk_load_p99(
    port: int, docs: np.ndarray, singles: list[bytes], seconds: float
) -> dict[str, Any]:
    """Single searches from one client while another re-upserts 10,000-point batches."""
    stop = threading.Event()
    batches: list[float] = []
    bulk = []
    for start in range(0, min(len(docs), 3 * BULK_BATCH), BULK_BATCH):
        points = [
            {"id": str(i), "vector": docs[i]}
            for i in range(start, min(start + BULK_BATCH, len(docs)))
        ]
        body = orjson.dumps(
            {"collection": NAME, "points": points}, option=orjson.OPT_SERIALIZE_NUMPY
        )
        bulk.append(encode("POST", "/index", body))

    def loader() -> None:
        client = RawClient(port)
        i = 0
        while not stop.is_set():
            t = time.perf_counter()
            status, body = client.request(bulk[i % len(bulk)])
            assert status == 200, body
            batches.append(time.perf_counter() - t)
            i += 1
        client.close()

    client = RawClient(port)
    thread = threading.Thread(target=loader)
    thread.start()
    time.sleep(0.2)
    latencies = []
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < seconds or not batches:
        t = time.perf_counter()
        client.request(singles[i % len(singles)])
        latencies.append(time.perf_counter() - t)
        i += 1
    wall = time.perf_counter() - started
    stop.set()
    thread.join()
    client.close()
    out = stats(latencies, len(latencies), wall)
    out["bulk_batches"] = len(batches)
    out["bulk_points_per_s"] = BULK_BATCH * len(batches) / sum(batches)
    out["bulk_mb_per_batch"] = len(bulk[0]) / 1e6
    return out


# -- the run ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variant", default="cos", choices=["cos", "ip"])
    p.add_argument("--quick", action="store_true", help="15,000 documents, fewer repeats")
    p.add_argument("--n-docs", type=int, default=None)
    p.add_argument("--singles", type=int, default=3000, help="single searches per measurement")
    p.add_argument("--batches", type=int, default=40, help="100-query batches per measurement")
    p.add_argument("--recall-queries", type=int, default=2000)
    p.add_argument(
        "--train-queries", type=int, default=20_000, help="logged to train the learned router"
    )
    p.add_argument("--bulk-seconds", type=float, default=5.0)
    p.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--inline-index",
        action="store_true",
        help="parse every /index body in the API process (as before issue 7), to compare",
    )
    p.add_argument("--show", type=Path, default=None, help="print the table of a saved run")
    p.add_argument("--breakdown", action="store_true", help="only the request-path breakdown")
    p.add_argument("--nlist", type=int, default=256, help="--breakdown: lists of the index")
    p.add_argument("--nprobe", type=int, default=8, help="--breakdown: lists probed")
    p.add_argument("--rounds", type=int, default=12, help="--breakdown: interleaved rounds")
    p.add_argument("--per-round", type=int, default=250, help="--breakdown: requests per row")
    p.add_argument("--pg-url", default=request_path.PG_URL, help="--breakdown: for pgvector")
    p.add_argument(
        "--placement",
        choices=list(PLACEMENTS),
        default="apart",
        help="--breakdown: the cores of the server and of this process (see PLACEMENTS)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.show is not None:
        saved: dict[str, Any] = json.loads(args.show.read_text())
        (print_breakdown if "rows" in saved else print_table)(saved)
        return saved
    if args.breakdown:
        return breakdown(args)
    if args.quick:
        args.n_docs = args.n_docs or 15_000
        args.singles, args.batches, args.recall_queries = 1000, 15, 500
        args.train_queries = min(args.train_queries, 5000)
        args.bulk_seconds = 3.0
    out_path = args.out or RESULTS / f"http_{args.variant}{'_quick' if args.quick else ''}.json"
    data = debian.load(
        args.variant,
        n_docs=args.n_docs,
        n_train=args.train_queries,
        n_test=max(args.recall_queries, 1000),
    )
    docs, queries = data.docs, data.test_queries
    gt = data.test_gt[:, :K]
    dim = docs.shape[1]
    metric = "cosine" if data.metric is Metric.COSINE else "ip"
    recall_q, recall_gt = queries[: args.recall_queries], gt[: args.recall_queries]

    tmp = Path(tempfile.mkdtemp(prefix="vecroute-bench-"))
    server = Server(tmp)
    if args.inline_index:
        server.env["VECROUTE_INDEX_INLINE_MAX_BYTES"] = str(1 << 40)
    report: dict[str, Any] = {
        "variant": args.variant,
        "n_docs": len(docs),
        "dim": dim,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "client": "raw keep-alive socket, pre-encoded HTTP/1.1 requests",
        "index_parsing": "in-process" if args.inline_index else "worker process over 256 KiB",
    }
    steps = 10
    progress = tqdm(total=steps + -(-len(docs) // INGEST_BATCH), desc="http bench", unit="step")
    try:
        server.start()
        report["server_loads"] = server.loaded(("uvloop", "httptools"))
        client = RawClient(server.port)
        client.json(
            "POST", "/collections", {"name": NAME, "dim": dim, "metric": metric}, expect=201
        )
        progress.set_postfix_str("ingest")
        report["ingest"] = ingest(client, docs, progress)

        progress.set_postfix_str("build")
        built = build(client)
        report["build_s"] = built["seconds"]
        report["index"] = built["info"]["index"]
        progress.update(1)

        progress.set_postfix_str("recall sweep")
        exact_recall = http_recall(client, recall_q[:200], recall_gt[:200], None, "exact")
        chosen, sweep = smallest_nprobe(client, recall_q, recall_gt, "centroid")
        report["recall"] = {"exact_routing": exact_recall, "sweep": sweep, "nprobe": chosen}
        progress.update(1)

        progress.set_postfix_str("learned router")
        learned = train_learned(client, data.train_queries[: args.train_queries])
        if learned["activated"]:
            learned["nprobe"], learned["sweep"] = smallest_nprobe(
                client, recall_q, recall_gt, "learned"
            )
        report["learned"] = learned
        progress.update(1)

        progress.set_postfix_str("in-process")
        index = in_process_index(tmp, docs, data.metric)
        found = index.search(recall_q, K, nprobe=chosen).ids
        report["recall"]["in_process"] = recall_at_k(found, recall_gt, K)
        singles_q = queries[np.arange(args.singles) % len(queries)]
        batch_q = [
            queries[(i * SEARCH_BATCH + np.arange(SEARCH_BATCH)) % len(queries)]
            for i in range(args.batches)
        ]
        inproc: dict[str, Any] = {"omp_threads": faiss.omp_get_max_threads()}
        for q in batch_q[:3]:
            index.search(q, K, nprobe=chosen)
        inproc["batch"] = timed(
            [lambda q=q: index.search(q, K, nprobe=chosen) for q in batch_q], SEARCH_BATCH
        )
        inproc["single"] = timed(
            [lambda q=q: index.search(q[None], K, nprobe=chosen) for q in singles_q], 1
        )

        def inproc_worker(c: int) -> Callable[[], list[float]]:
            mine = singles_q[c::CLIENTS]

            def run() -> list[float]:
                lat = []
                for q in mine:
                    t = time.perf_counter()
                    index.search(q[None], K, nprobe=chosen)
                    lat.append(time.perf_counter() - t)
                return lat

            return run

        inproc["single_8_threads"] = concurrent(inproc_worker, CLIENTS, len(singles_q))
        faiss.omp_set_num_threads(1)
        inproc["single_omp1"] = timed(
            [lambda q=q: index.search(q[None], K, nprobe=chosen) for q in singles_q], 1
        )
        faiss.omp_set_num_threads(inproc["omp_threads"])
        report["in_process"] = inproc
        progress.update(1)

        progress.set_postfix_str("http batch")
        http: dict[str, Any] = {}
        client.close()  # idle past uvicorn's keep-alive timeout during the in-process runs
        client = RawClient(server.port)
        floor = encode("GET", "/healthz")
        for _ in range(200):
            client.request(floor)
        http["healthz"] = timed([lambda: client.request(floor)] * args.singles, 1)
        batch_raw = [batch_body(q, chosen, "centroid") for q in batch_q]
        for raw in batch_raw[:3]:
            client.request(raw)
        http["batch"] = timed(
            [lambda raw=raw: client.request(raw) for raw in batch_raw], SEARCH_BATCH
        )
        progress.update(1)

        progress.set_postfix_str("http single")
        single_raw = [search_body(q, chosen, "centroid") for q in singles_q]
        for raw in single_raw[:200]:
            client.request(raw)
        http["single"] = timed([lambda raw=raw: client.request(raw) for raw in single_raw], 1)
        if learned["activated"]:
            learned_raw = [search_body(q, learned["nprobe"], "learned") for q in singles_q]
            for raw in learned_raw[:200]:
                client.request(raw)
            http["single_learned"] = timed(
                [lambda raw=raw: client.request(raw) for raw in learned_raw], 1
            )
        progress.update(1)

        def http_worker(c: int) -> Callable[[], list[float]]:
            mine = single_raw[c::CLIENTS]
            own = RawClient(server.port)

            def run() -> list[float]:
                lat = []
                for raw in mine:
                    t = time.perf_counter()
                    own.request(raw)
                    lat.append(time.perf_counter() - t)
                own.close()
                return lat

            return run

        http["single_8_clients"] = concurrent(http_worker, CLIENTS, len(single_raw))
        report["http"] = http
        progress.update(1)

        progress.set_postfix_str("bulk load")
        report["during_bulk_load"] = bulk_load_p99(server.port, docs, single_raw, args.bulk_seconds)
        progress.update(1)
        client.close()

        progress.set_postfix_str("restart (kill -9)")
        server.kill()
        report["restart_after_kill_s"] = server.start()
        progress.update(1)
        progress.set_postfix_str("restart (graceful)")
        report["graceful_stop_s"] = server.stop()
        report["restart_after_stop_s"] = server.start()
        progress.update(1)
    finally:
        progress.close()
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(report)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {out_path}")
    return report


def print_table(r: dict[str, Any]) -> None:
    ing = r["ingest"]
    learned = r.get("learned", {})
    print(f"\nserver loads uvloop/httptools: {r['server_loads']}", end="")
    print(
        f"\n{r['variant']}: {r['n_docs']} docs x {r['dim']}, nlist {r['index']['nlist']}, "
        f"client: {r['client']}"
    )
    print(
        f"ingest: {ing['points_per_s']:.0f} points/s in batches of {INGEST_BATCH} "
        f"({ing['mb_per_batch']:.1f} MB), per batch p50 {ing['p50_ms']:.1f} ms "
        f"p99 {ing['p99_ms']:.1f} ms; build {r['build_s']:.1f} s"
    )
    rec = r["recall"]
    sweep = {int(k): v for k, v in rec["sweep"].items()}  # str keys once read back from JSON
    print(
        f"recall@10: nprobe {rec['nprobe']} -> {sweep[int(rec['nprobe'])]:.3f} over HTTP, "
        f"{rec['in_process']:.3f} in-process (exact routing {rec['exact_routing']:.3f})"
    )
    print(f"\n{'measurement':<34}{'qps':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    rows = [
        ("in-process batch (100 q/call)", r["in_process"]["batch"]),
        ("HTTP /search/batch (100 q)", r["http"]["batch"]),
        ("in-process single", r["in_process"]["single"]),
        ("in-process single, 1 OMP thread", r["in_process"]["single_omp1"]),
        ("HTTP /search, 1 client", r["http"]["single"]),
        *(
            [(f"HTTP /search learned nprobe {learned['nprobe']}", r["http"]["single_learned"])]
            if "single_learned" in r["http"]
            else []
        ),
        ("in-process single, 8 threads", r["in_process"]["single_8_threads"]),
        ("HTTP /search, 8 clients", r["http"]["single_8_clients"]),
        ("HTTP /healthz, 1 client (floor)", r["http"]["healthz"]),
        ("HTTP /search during bulk load", r["during_bulk_load"]),
    ]
    for label, s in rows:
        print(
            f"{label:<34}{s['qps']:>10.0f}{s['p50_ms']:>10.3f}{s['p99_ms']:>10.3f}"
            f"{s['max_ms']:>10.2f}"
        )
    if learned:
        state = "activated" if learned["activated"] else "not activated (lost the gate)"
        line = (
            f"learned router ({learned['queries_logged']} logged queries, "
            f"{learned['seconds']:.0f} s to log and train): {state}"
        )
        if "nprobe" in learned:
            at = {int(k): v for k, v in learned["sweep"].items()}[int(learned["nprobe"])]
            line += f"; recall@10 {at:.3f} at nprobe {learned['nprobe']}"
        print(line)
    ratio = r["http"]["batch"]["qps"] / r["in_process"]["batch"]["qps"]
    bulk = r["during_bulk_load"]
    print(
        f"\nHTTP batch throughput = {ratio:.0%} of in-process; bulk load meanwhile: "
        f"{bulk['bulk_points_per_s']:.0f} points/s in {bulk['bulk_batches']} batches of "
        f"{BULK_BATCH} ({bulk['bulk_mb_per_batch']:.0f} MB)"
    )
    print(
        f"restart to /readyz: {r['restart_after_kill_s']:.2f} s after kill -9, "
        f"{r['restart_after_stop_s']:.2f} s after a graceful stop "
        f"(stop took {r['graceful_stop_s']:.2f} s)"
    )


def breakdown(args: argparse.Namespace) -> dict[str, Any]:
    """The request path against the engine and pgvector, in interleaved rounds."""
    data = debian.load(args.variant, n_docs=args.n_docs, n_train=1, n_test=1000)
    docs, queries, gt = data.docs, data.test_queries, data.test_gt[:, :K]
    n_recall = min(args.recall_queries, len(queries))
    metric = "cosine" if data.metric is Metric.COSINE else "ip"
    tmp = Path(tempfile.mkdtemp(prefix="vecroute-bench-"))
    server = Server(tmp)
    huge = str(10**9)
    server.env.update(
        VECROUTE_AUTO_POLICY="true", VECROUTE_BUILD_MIN_POINTS=huge, VECROUTE_TRAIN_MIN_QUERIES=huge
    )
    report: dict[str, Any] = {
        "variant": args.variant,
        "n_docs": len(docs),
        "dim": docs.shape[1],
        "nprobe": args.nprobe,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_before": os.getloadavg(),
    }
    try:
        server.start()
        report["server_loads"] = server.loaded(("uvloop", "httptools"))
        report["placement"] = place(server, args.placement)
        client = RawClient(server.port)
        new = {"name": NAME, "dim": docs.shape[1], "metric": metric, "nlist": args.nlist}
        client.json("POST", "/collections", new, expect=201)
        ingest(client, docs)
        report["index"] = build(client)["info"]["index"]
        index = in_process_index(tmp, docs, data.metric)
        faiss.omp_set_num_threads(1)  # the server runs a small search on its loop thread
        recall_q, recall_gt = queries[:n_recall], gt[:n_recall]
        report["recall"] = {
            "in_process": recall_at_k(
                index.search(recall_q, K, nprobe=args.nprobe).ids, recall_gt, K
            ),
            "http": http_recall(client, recall_q, recall_gt, args.nprobe, "centroid"),
        }
        bodies = [centroid_search_json(q, args.nprobe) for q in queries]
        client.close()  # idle past the keep-alive timeout while pgvector loads
        with contextlib.ExitStack() as stack:
            rows = pgvector_rows(stack, args, docs, queries, gt, report)
            raw = stack.enter_context(contextlib.closing(RawClient(server.port)))
            heads: list[bytes] = []
            http_rows, close = request_path.http_rows(server.port, raw, encode, bodies, heads)
            stack.callback(close)
            options = centroid_options(args.nprobe)
            shipped, close = request_path.client_rows(server.port, NAME, queries, K, options)
            stack.callback(close)

            def engine(i: int) -> None:
                index.search(queries[i % len(queries)][None], K, nprobe=args.nprobe)

            healthz = http_rows["raw socket /healthz"]
            rows = {
                **http_rows,
                **shipped,
                ENGINE: engine,
                PACED_ENGINE: request_path.Paced(healthz, engine),
                **rows,
            }
            for call in rows.values():  # warm: connections, prepared statements, caches
                for i in range(100):
                    call(i)
            heads.clear()
            before = raw.request(encode("GET", "/metrics"))[1]
            report["rows"] = request_path.interleaved(rows, args.rounds, args.per_round)
            after = raw.request(encode("GET", "/metrics"))[1]
            inside = np.asarray(request_path.engine_ms(heads))
            report["server_engine"] = {
                "p50_ms": float(np.percentile(inside, 50)),
                "p99_ms": float(np.percentile(inside, 99)),
                "requests": len(inside),
            }
            report["server_side_ms"] = request_path.server_side_ms(before, after)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report["load_average_after"] = os.getloadavg()
    print_breakdown(report)
    out = args.out or RESULTS / f"http_breakdown_{args.variant}_{args.placement}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {out}")
    return report


def place(server: Server, placement: str) -> str:
    """Pin the server's threads (those it starts later inherit it) and this process."""
    cores = PLACEMENTS[placement]
    if cores is None or (os.cpu_count() or 1) < 2:
        return "free"
    assert server.proc is not None
    server_cores, own = cores
    command = ["taskset", "--all-tasks", "-p", "-c", server_cores, str(server.proc.pid)]
    subprocess.run(command, check=True, capture_output=True)
    os.sched_setaffinity(0, own)
    return placement


def pgvector_rows(
    stack: contextlib.ExitStack,
    args: argparse.Namespace,
    docs: np.ndarray,
    queries: np.ndarray,
    gt: np.ndarray,
    report: dict[str, Any],
) -> dict[str, request_path.Call]:
    """The pgvector row at the IVF's recall, or none (and the reason in the report)."""
    n_recall = min(args.recall_queries, len(queries))
    try:
        conn, build_s = stack.enter_context(request_path.pgvector_table(args.pg_url, docs))
    except (RuntimeError, OSError, psycopg.Error) as exc:
        report["pgvector"] = {"skipped": str(exc)}
        print(f"pgvector row skipped: {exc}")
        return {}
    ef, sweep = request_path.ef_search_for(
        conn, queries[:n_recall], gt[:n_recall], report["recall"]["in_process"]
    )
    conn.execute(f"SET hnsw.ef_search = {ef}")
    search = request_path.pgvector_search(conn)
    literals = [request_path.vector_literal(q) for q in queries]
    report["pgvector"] = {"ef_search": ef, "sweep": sweep, "index_build_s": build_s}
    return {f"pgvector HNSW ef_search {ef}": lambda i: search(literals[i % len(literals)])}


def print_breakdown(r: dict[str, Any]) -> None:
    rows = r["rows"]
    rec = r["recall"]
    print(
        f"\n{r['variant']}: {r['n_docs']} docs x {r['dim']}, nlist {r['index']['nlist']}, "
        f"nprobe {r['nprobe']}: recall@10 {rec['http']:.3f} over HTTP, "
        f"{rec['in_process']:.3f} in-process; server loads uvloop/httptools: {r['server_loads']}; "
        f"placement {r.get('placement', 'free')} (server and client cores: --placement)"
    )
    pg = r["pgvector"]
    if "skipped" in pg:
        print(f"pgvector: skipped ({pg['skipped']})")
    else:
        at = {int(k): v for k, v in pg["sweep"].items()}[int(pg["ef_search"])]
        print(
            f"pgvector HNSW (m 16, ef_construction 64, built in {pg['index_build_s']:.0f} s): "
            f"recall@10 {at:.3f} at ef_search {pg['ef_search']}"
        )
    print(f"\n{'row':<34}{'p50 ms':>9}{'p99 ms':>9}{'round p50 min-max':>20}")
    for name, s in rows.items():
        spread = f"{s['round_p50_min_ms']:.3f}-{s['round_p50_max_ms']:.3f}"
        print(f"{name:<34}{s['p50_ms']:>9.3f}{s['p99_ms']:>9.3f}{spread:>20}")
    inside = r["server_side_ms"]
    print(
        "\nserver-side mean inside its middleware (all callers): "
        f"/healthz {inside['/healthz']:.3f} ms, /search {inside['/search']:.3f} ms"
    )
    floor = rows["raw socket /healthz"]["p50_ms"]
    search = rows["raw socket /search"]["p50_ms"]
    print(
        f"\n/healthz p50 {floor:.3f} ms (goal <= 0.3); load average "
        f"{r['load_average_before'][0]:.1f} before, {r['load_average_after'][0]:.1f} after"
    )
    # The engine as the server runs it (paced) is the goal's; older runs have only the other.
    for engine in (PACED_ENGINE, ENGINE):
        if engine not in rows:
            continue
        goal = " (the goal's: <= 0.15)" if engine == PACED_ENGINE else ""
        gap = search - floor - rows[engine]["p50_ms"]
        print(f"/search p50 - /healthz p50 - {engine} p50 = {gap:.3f} ms{goal}")
        parts = [
            rows[name].get("round_p50_ms")
            for name in ("raw socket /search", "raw socket /healthz", engine)
        ]
        if all(parts):  # runs before per-round medians were kept have none
            gaps = [s - h - e for s, h, e in zip(*parts, strict=True)]
            print(
                f"  round by round ({len(gaps)} interleaved rounds): median "
                f"{np.median(gaps):.3f} ms, min-max {min(gaps):.3f}-{max(gaps):.3f}"
            )
    if "server_engine" in r:  # runs before the Server-Timing header have none
        inside = r["server_engine"]
        print(
            f"the engine inside the server (Server-Timing of the raw /search responses): p50 "
            f"{inside['p50_ms']:.3f} ms, p99 {inside['p99_ms']:.3f} ms; /search p50 - /healthz "
            f"p50 - that = {search - floor - inside['p50_ms']:.3f} ms"
        )


if __name__ == "__main__":
    main()
