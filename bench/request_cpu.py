"""CPU per ``/search`` beyond ``/healthz`` and the engine, in-process, without sockets.

``bench/http.py --breakdown`` times the whole round trip on a shared machine, where a change
of 10-20 us hides in the noise. This drives the server from one uvloop loop in this process
(no sockets), over the same data and index settings, and counts the process's CPU time
(every thread: the query log's flush and the scheduler included) per request, in
interleaved rounds:

- ``/search``: a pre-encoded request through the whole stack (request id, metrics, body
  limit, the fast route, parsing, planning, search, hits, logging, the response);
- ``/healthz``: the same stack with a constant handler;
- the engine: the server's own ``VectorIndex.search`` for the same queries.

By default the requests enter as bytes through the server's HTTP protocol (app/api/protocol.py:
uvicorn's parsing and the inline fast path, as in ``vecroute serve``, a transport that keeps
what is written instead of a socket); ``--through asgi`` calls the app's ASGI entry point
(the edge and the fast routes' async path, what other ASGI servers run).

``/search - /healthz - engine`` is then what the request path adds on top of one search.
The engine's time inside the ``/search`` requests (their ``Server-Timing`` header, wall
time) is printed beside the engine's own, to show what running between requests costs it.

    .venv/bin/python bench/request_cpu.py                    # 60,631 docs, cos, nlist 256
    .venv/bin/python bench/request_cpu.py --profile 3000     # plus cProfile of /search
    .venv/bin/python bench/request_cpu.py --stub-engine      # the request path alone

``--stub-engine`` answers every search with one precomputed engine result, so that the
request path's few tens of us are measured without the engine's noise (A/B of its changes);
``--stub-touch-mb 3`` makes the stub read 3 MB first, as a scan of 8 of 256 lists reads
~2.8 MB of vectors here: the request path then runs on cold caches, as it does in the server.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before faiss loads, as the server

import argparse
import asyncio
import cProfile
import pstats
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvloop

sys.path[0] = str(Path(__file__).resolve().parent.parent)

# After the path is set: bench/http.py would shadow the standard library's http for uvicorn.
import uvicorn
from uvicorn.server import ServerState

from app.api.protocol import InlineHttpProtocol
from app.main import VecrouteApp, create_app
from app.settings import Settings
from bench import debian
from bench.http import NAME, K, centroid_search_json, encode


class Written(asyncio.Transport):
    """A transport keeping what the protocol writes."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return False


class ProtocolDriver:
    """Raw HTTP/1.1 requests into ``vecroute serve``'s protocol, answered inline."""

    def __init__(self, app: VecrouteApp) -> None:
        assert app.edge is not None
        config = uvicorn.Config(app, http=InlineHttpProtocol.for_edge(app.edge), log_config=None)
        config.load()
        loop = asyncio.get_running_loop()
        state = ServerState()
        self.protocol = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=state, app_state={}, _loop=loop
        )
        self.transport = Written()
        self.protocol.connection_made(self.transport)

    def request(self, raw: bytes) -> tuple[int, bytes]:
        """Status and head of the answer (which must come inline)."""
        out = self.transport.out
        out.clear()
        self.protocol.data_received(raw)
        assert len(out) == 1, "not answered inline"
        head = out[0][: out[0].index(b"\r\n\r\n")]
        return int(head[9:12]), head


class Driver:
    """ASGI requests to ``app`` and the lifespan around them."""

    def __init__(self, app: VecrouteApp) -> None:
        self.app = app
        self._lifespan: asyncio.Task[None] | None = None
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._lifespan = asyncio.create_task(
            self.app(scope, self._to_app.get, self._from_app.put)  # type: ignore[arg-type]
        )
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._from_app.get()
        assert message["type"] == "lifespan.startup.complete", message

    async def stop(self) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        await self._from_app.get()
        assert self._lifespan is not None
        await self._lifespan

    async def request(
        self, method: str, path: str, body: bytes = b""
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        headers = [(b"host", b"127.0.0.1")]
        if body:
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 0
        chunks: list[bytes] = []
        response_headers: list[tuple[bytes, bytes]] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers.extend(message.get("headers", ()))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)  # type: ignore[arg-type]
        return status, b"".join(chunks), response_headers

    async def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        raw = b"" if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        status, out, _ = await self.request(method, path, raw)
        if status != expect:
            raise RuntimeError(f"{method} {path}: {status} {out[:300]!r}")
        return orjson.loads(out) if out else None


async def load_collection(driver: Driver, docs: np.ndarray, metric: str, nlist: int) -> None:
    new = {"name": NAME, "dim": docs.shape[1], "metric": metric, "nlist": nlist}
    await driver.json("POST", "/collections", new, expect=201)
    for start in range(0, len(docs), 1000):
        batch = range(start, min(start + 1000, len(docs)))
        points = [{"id": str(i), "vector": docs[i]} for i in batch]
        await driver.json("POST", "/index", {"collection": NAME, "points": points})
    job = (await driver.json("POST", f"/collections/{NAME}/build", expect=202))["job_id"]
    while (await driver.json("GET", f"/jobs/{job}"))["status"] != "succeeded":
        await asyncio.sleep(0.2)
    while (await driver.json("GET", f"/collections/{NAME}"))["index"]["state"] != "ivf":
        await asyncio.sleep(0.05)


Row = Callable[[int], Awaitable[Any]]
_SERVER_TIMING = re.compile(rb"(?i)\r\nserver-timing: *engine;dur=([0-9.]+)")


async def interleaved(rows: dict[str, Row], rounds: int, per_round: int) -> dict[str, Any]:
    """Per row: median over rounds of CPU us and wall us per request."""
    names = list(rows)
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            call = rows[name]
            c0, w0 = time.process_time(), time.perf_counter()
            for j in range(per_round):
                await call(r * per_round + j)
            cpu[name].append((time.process_time() - c0) / per_round * 1e6)
            wall[name].append((time.perf_counter() - w0) / per_round * 1e6)
    return {
        n: {
            "cpu_us": float(np.median(cpu[n])),
            "cpu_us_min": min(cpu[n]),
            "cpu_us_max": max(cpu[n]),
            "wall_us": float(np.median(wall[n])),
        }
        for n in names
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data = debian.load(args.variant, n_docs=args.n_docs, n_train=1, n_test=1000)
    metric = "cosine" if args.variant == "cos" else "ip"
    huge = 10**9
    data_dir = Path(tempfile.mkdtemp(prefix="vecroute-cpu-"))
    settings = Settings(
        data_dir=data_dir,
        build_min_points=huge,  # the scheduler runs, as in the breakdown, but starts no job
        train_min_queries=huge,
        log_level="WARNING",
    )
    app = create_app(settings)
    driver = Driver(app)
    await driver.start()
    try:
        await load_collection(driver, data.docs, metric, args.nlist)
        index = app.state.service.registry.get(NAME).index
        queries = data.test_queries
        if args.stub_engine:
            fixed = index.search(queries[:1], K, nprobe=args.nprobe)
            lists = np.ones(int(args.stub_touch_mb * (1 << 20)) // 4, dtype=np.float32)

            def stub(*_: Any, **__: Any) -> Any:
                lists.sum()  # reads every byte, as a scan reads its lists
                return fixed

            index.search = stub  # type: ignore[method-assign]
        bodies = [centroid_search_json(q, args.nprobe) for q in queries]

        engine_inside: list[float] = []
        raw = [encode("POST", "/search", body) for body in bodies]
        raw_healthz = encode("GET", "/healthz")
        protocol = ProtocolDriver(app) if args.through == "protocol" else None

        async def search(i: int) -> None:
            if protocol is not None:
                status, head = protocol.request(raw[i % len(raw)])
                timing = _SERVER_TIMING.search(head)
                assert status == 200 and timing is not None, head
                engine_inside.append(float(timing.group(1)) * 1e3)
                return
            status, out, headers = await driver.request("POST", "/search", bodies[i % len(bodies)])
            assert status == 200, out
            timing_value = dict(headers).get(b"server-timing")
            if timing_value is not None:  # absent before the header existed
                engine_inside.append(float(timing_value.removeprefix(b"engine;dur=")) * 1e3)

        async def healthz(i: int) -> None:
            if protocol is not None:
                status = protocol.request(raw_healthz)[0]
            else:
                status = (await driver.request("GET", "/healthz"))[0]
            assert status == 200

        async def engine(i: int) -> None:
            index.search(queries[i % len(queries)][None], K, nprobe=args.nprobe)

        rows: dict[str, Row] = {"/search": search, "/healthz": healthz, "engine": engine}
        for call in rows.values():
            for i in range(200):
                await call(i)
        engine_inside.clear()
        report = await interleaved(rows, args.rounds, args.per_round)
        inside = float(np.median(engine_inside)) if engine_inside else float("nan")
        report["engine inside /search"] = {"wall_us": inside}
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for i in range(args.profile):
                await search(i)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
    finally:
        await driver.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variant", default="cos", choices=["cos", "ip"])
    p.add_argument("--n-docs", type=int, default=None)
    p.add_argument("--nlist", type=int, default=256)
    p.add_argument("--nprobe", type=int, default=8)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--per-round", type=int, default=500)
    p.add_argument("--profile", type=int, default=0, help="then cProfile this many /search")
    p.add_argument("--stub-engine", action="store_true", help="one fixed engine result")
    p.add_argument(
        "--through",
        choices=["protocol", "asgi"],
        default="protocol",
        help="requests as bytes into the server's protocol, or as ASGI calls to the app",
    )
    p.add_argument("--stub-touch-mb", type=float, default=0, help="MB the stub reads first")
    args = p.parse_args(argv)
    report = uvloop.run(run(args))
    print(f"\n{'row':<10}{'CPU us/request':>16}{'min-max over rounds':>22}{'wall us':>10}")
    inside = report.pop("engine inside /search")["wall_us"]
    for name, r in report.items():
        spread = f"{r['cpu_us_min']:.1f}-{r['cpu_us_max']:.1f}"
        print(f"{name:<10}{r['cpu_us']:>16.1f}{spread:>22}{r['wall_us']:>10.1f}")
    print(f"the engine inside /search (Server-Timing): median {inside:.1f} us of wall time")
    search, healthz, engine = (report[n]["cpu_us"] for n in ("/search", "/healthz", "engine"))
    print(f"\n/search - /healthz - engine = {search - healthz - engine:.1f} us of CPU per request")


if __name__ == "__main__":
    main()
