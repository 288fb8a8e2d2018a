"""Does logging queries slow searches down? Single /search over HTTP with and without it.

Every search is logged for router training through an in-memory buffer that a background
thread flushes to the store in batches, so the request path only appends to a list. This
measures it: the same queries, alternating blocks of ``"log": true`` and ``"log": false``
(so drift in machine load hits both alike), on one server over a keep-alive raw socket.

    .venv/bin/python bench/query_log.py                 # 20,000 cos documents, 4,000 searches each
    .venv/bin/python bench/query_log.py --n-docs 60631  # all of them
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

# Run as a script, bench/ would come first on sys.path and bench/http.py would shadow the
# standard library's http; the repository root goes there instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import debian
from bench.http import NAME, RawClient, Server, build, encode, ingest, search_body, stats

RESULTS = Path(__file__).resolve().parent / "results"
BLOCK = 200


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-docs", type=int, default=20_000)
    p.add_argument("--searches", type=int, default=4000, help="per setting")
    p.add_argument("--nprobe", type=int, default=16)
    p.add_argument("--out", type=Path, default=RESULTS / "query_log.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    data = debian.load("cos", n_docs=args.n_docs, n_train=0, n_test=None)
    queries = data.test_queries
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        server.start()
        client = RawClient(server.port)
        try:
            client.json("POST", "/collections", {"name": NAME, "dim": 384, "metric": "cosine"}, 201)
            with tqdm(total=-(-len(data.docs) // 1000), desc="ingest", unit="batch") as bar:
                ingest(client, data.docs, bar)
            build(client)
            latencies: dict[bool, list[float]] = {True: [], False: []}
            rounds = args.searches // BLOCK
            with tqdm(total=2 * rounds * BLOCK, desc="searches", unit="q") as bar:
                for r in range(rounds):
                    for log in (r % 2 == 0, r % 2 == 1):  # alternate which goes first
                        for i in range(BLOCK):
                            raw = search_body(
                                queries[(r * BLOCK + i) % len(queries)], args.nprobe, log=log
                            )
                            t = time.perf_counter()
                            status, out = client.request(raw)
                            latencies[log].append(time.perf_counter() - t)
                            assert status == 200, out
                        bar.update(BLOCK)
            time.sleep(1.5)  # let the flusher write the last buffered queries
            metrics = client.request(encode("GET", "/metrics"))[1].decode()
        finally:
            client.close()
            server.stop()
    result = {
        "config": {k: str(v) for k, v in vars(args).items()},
        "logged": stats(latencies[True], len(latencies[True]), sum(latencies[True])),
        "not_logged": stats(latencies[False], len(latencies[False]), sum(latencies[False])),
        "query_log_metrics": [
            line
            for line in metrics.splitlines()
            if "query_log" in line and not line.startswith("#")
        ],
    }
    print(f"\n{'single /search':20}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for name in ("logged", "not_logged"):
        s = result[name]
        mean_ms = 1e3 / s["qps"]
        print(f"{name:20}{s['p50_ms']:>9.3f}{s['p99_ms']:>9.3f}{mean_ms:>9.3f}")
    for line in result["query_log_metrics"]:
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
