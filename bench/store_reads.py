"""The store reads that shard replicas, placement and the quantize job make, on SQLite and
PostgreSQL, against what they replaced:

- live points per list (``list_sizes``: a replica sizes its lists by it, placement weighs
  lists by it) from the list index that holds ``deleted`` (migration 0013), against the
  index without it, where every row (vector included) was read for its flag;
- a codebook's training sample (``sample_live_points``: the live ids, then only the vectors
  drawn), against reading every vector as the quantize job did.

Random vectors, each labelled with one of 1,000 lists; best of three runs each, warm caches;
PostgreSQL vacuumed first (its index-only scans need the visibility map).

    .venv/bin/python bench/store_reads.py                          # 200,000 x 384, both
    .venv/bin/python bench/store_reads.py --n 50000 --backends sqlite
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from app.engine.codes import TRAIN_SAMPLE
from app.store.collections import create_collection
from app.store.db import Store
from app.store.migrate import upgrade
from app.store.point_lists import list_sizes
from app.store.points import iter_live_points, sample_live_points, upsert_points
from app.store.seq import next_seq
from bench.databases import postgres_database

RESULTS = Path(__file__).resolve().parent / "results"
NLIST = 1000
VERSION = 1
BLOCK = 20_000
OLD_INDEX = (
    "CREATE INDEX ix_points_collection_list ON points (collection_id, list_version, list_no)"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=200_000, help="points")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    p.add_argument("--out", type=Path, default=RESULTS / "store_reads.json")
    return p.parse_args(argv)


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A new, empty database of ``backend``, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="vecroute-reads-") as tmp:
            yield f"sqlite:///{tmp}/store.sqlite"
        return
    with postgres_database("vecroute_bench") as url:
        yield url


def fill(store: Store, n: int, dim: int) -> int:
    """A collection of ``n`` random points, labelled with random lists; its id."""
    upgrade(store)
    record = create_collection(
        store, name="c", dim=dim, metric="ip", nlist=None, algorithm="kmeans"
    )
    assert record is not None
    rng = np.random.default_rng(0)
    for start in range(0, n, BLOCK):
        size = min(BLOCK, n - start)
        vectors = rng.standard_normal((size, dim), dtype=np.float32)
        names = [str(i) for i in range(start, start + size)]
        labels = (VERSION, rng.integers(0, NLIST, size))
        with store.write() as session:
            seq = next_seq(session)
            upsert_points(session, record.id, seq, names, vectors, [None] * size, labels)
    return record.id


def settle(store: Store) -> None:
    """PostgreSQL: statistics and the visibility map, as autovacuum would leave them."""
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE points"))


def best_ms(store: Store, read: Callable[[Any], object]) -> float:
    """The fastest of three runs of ``read(session)``, in ms."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        with store.read() as session:
            read(session)
        times.append(time.perf_counter() - started)
    return min(times) * 1e3


def every_vector(session: Any, cid: int, dim: int) -> int:
    return sum(len(ids) for ids, _ in iter_live_points(session, cid, dim))


def measure(backend: str, n: int, dim: int) -> dict[str, float]:
    with database(backend) as url:
        store = Store(url)
        cid = fill(store, n, dim)
        settle(store)
        row = {
            "list_sizes_ms": best_ms(store, lambda s: list_sizes(s, cid, VERSION, NLIST)),
            "sample_ms": best_ms(store, lambda s: sample_live_points(s, cid, dim, TRAIN_SAMPLE)),
            "every_vector_ms": best_ms(store, lambda s: every_vector(s, cid, dim)),
        }
        with store.engine.begin() as conn:  # the list index as it was before 0013
            conn.execute(text("DROP INDEX ix_points_list_live"))
            conn.execute(text(OLD_INDEX))
        settle(store)
        row["list_sizes_old_index_ms"] = best_ms(
            store, lambda s: list_sizes(s, cid, VERSION, NLIST)
        )
        store.dispose()
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    rows = {backend: measure(backend, args.n, args.dim) for backend in args.backends}
    print(f"\n{args.n} x {args.dim} points in {NLIST} lists; ms, best of 3\n")
    print(f"{'backend':<12}{'list sizes':>12}{'old index':>12}{'sample':>10}{'every vector':>14}")
    for backend, r in rows.items():
        print(
            f"{backend:<12}{r['list_sizes_ms']:>12.0f}{r['list_sizes_old_index_ms']:>12.0f}"
            f"{r['sample_ms']:>10.0f}{r['every_vector_ms']:>14.0f}"
        )
    print(f"(sample: {TRAIN_SAMPLE} of the vectors; every vector: as the quantize job read them)")
    report = {"n": args.n, "dim": args.dim, "nlist": NLIST, "backends": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
