"""Paper 003's own comparison on the shared Debian data: catalyzer codes vs plain codes.

For each method at equal bits, the paper's measure 1-recall@R (R = 1, 10, 100): the share of
test queries whose exact nearest neighbour (shipped ground truth) is among the top R by the
codes. Training is on the database vectors (the catalyzer on a seeded sample, its default);
the clock covers training only (encoding the database is listed apart).

- ``sign-rotation``: sign bits after a random rotation (faiss ``IndexLSH``, rotate_data), Hamming;
- ``itq``: ITQ (faiss ``ITQTransform``, PCA + learned rotation) then sign bits, Hamming;
- ``pq`` / ``opq``: faiss 8 x 8-bit product codes (with an ``OPQMatrix`` rotation), asymmetric;
- ``lattice-rotation``: a random 24-d projection then the 64-bit Zn lattice code, asymmetric;
- ``catalyzer-sign``: catalyzer (d_out = bits), sign bits, Hamming;
- ``catalyzer-lattice``: catalyzer (d_out 24), Zn lattice code (r² 79), asymmetric (the
  query's catalyzed vector against the decoded points, scanned as int8).

A second table measures per-vector costs: catalyzer ``apply`` per query (alone and in a
batch), Hamming and int8-lattice scans per database vector, and ``ZnSphereCodec`` decode per
code (what scanning the 8-byte codes directly would cost instead of 24 int8 bytes).

    .venv/bin/python bench/catalyzer.py                    # cos, everything (~15 min, 2 cores)
    .venv/bin/python bench/catalyzer.py --variant ip       # raw vectors, MIPS ground truth
    .venv/bin/python bench/catalyzer.py --quick            # 20k docs, 1,000 queries, 64 bits
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

# Run as a script, bench/ would be sys.path[0] and bench/http.py would shadow the stdlib
# ``http`` (torch imports it); the repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
# Idle OpenMP workers sleep instead of spinning: torch and faiss each bring a runtime, and
# the machine is shared.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss
import numpy as np

from app.engine.catalyzer import LATTICE_DIM, LatticeCodec, binary_index, lattice_index
from app.engine.catalyzer import sign_codes as pack_signs
from bench import debian
from worker.train_catalyzer import CatalyzerConfig, Quantizer, train_catalyzer

RESULTS = Path(__file__).resolve().parent / "results"
RS = (1, 10, 100)


@dataclass
class Row:
    method: str
    bits: int
    bytes_scanned: int  # bytes per database vector the search reads (lattice: 24 int8)
    recall: dict[str, float]
    train_s: float
    encode_s: float
    notes: dict[str, Any]


Searcher = Callable[[np.ndarray, int], np.ndarray]  # (queries, R) → (nq, R) ids


def one_recall(found: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """1-recall@R: the exact nearest neighbour is in the top R."""
    return {f"1-R@{r}": float((found[:, :r] == truth[:, :1]).any(axis=1).mean()) for r in RS}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def faiss_row(method: str, bits: int, index: faiss.Index, docs: np.ndarray) -> tuple[Row, Searcher]:
    """Train and fill any faiss index; its search is the method."""
    _, train_s = _timed(lambda: index.train(docs))
    _, encode_s = _timed(lambda: index.add(docs))
    size = index.sa_code_size() if hasattr(index, "sa_code_size") else bits // 8
    row = Row(method, bits, int(size), {}, train_s, encode_s, {})
    return row, lambda q, r: index.search(q, r)[1]


def sign_rotation(docs: np.ndarray, bits: int) -> tuple[Row, Searcher]:
    return faiss_row("sign-rotation", bits, faiss.IndexLSH(docs.shape[1], bits, True, False), docs)


def itq(docs: np.ndarray, bits: int) -> tuple[Row, Searcher]:
    index = faiss.IndexPreTransform(
        faiss.ITQTransform(docs.shape[1], bits, True), faiss.IndexLSH(bits, bits, False, False)
    )
    return faiss_row("itq", bits, index, docs)


def pq(docs: np.ndarray, metric: int, rotate: bool) -> tuple[Row, Searcher]:
    d = docs.shape[1]
    base = faiss.IndexPQ(d, 8, 8, metric)
    index = faiss.IndexPreTransform(faiss.OPQMatrix(d, 8), base) if rotate else base
    row, search = faiss_row("opq" if rotate else "pq", 64, index, docs)
    row.bytes_scanned = 8
    return row, search


def lattice_rotation(docs: np.ndarray) -> tuple[Row, Searcher]:
    """The lattice code without a catalyzer: what adapting the data buys."""
    rng = np.random.default_rng(0)
    proj = np.linalg.qr(rng.standard_normal((docs.shape[1], docs.shape[1])))[0][:, :LATTICE_DIM]
    proj = proj.astype(np.float32)
    codec = LatticeCodec()
    points, encode_s = _timed(lambda: codec.decode(codec.encode(docs @ proj)))
    index = lattice_index(points)
    row = Row("lattice-rotation", 64, 24, {}, 0.0, encode_s, {})
    return row, lambda q, r: index.search(np.ascontiguousarray(q @ proj), r)[1]


def catalyzer(
    docs: np.ndarray, config: CatalyzerConfig, log: Callable[[str], None]
) -> tuple[Row, Searcher, Any]:
    name = f"catalyzer-{config.quantizer}"
    marks = [0.0]

    def progress(f: float) -> None:
        if f >= marks[0] + 0.1 or f == 1.0:
            marks[0] = f
            log(f"  {name} {config.bits} bits: {f:.0%}")

    cat, train_s = _timed(lambda: train_catalyzer(docs, config, progress))
    y, apply_s = _timed(lambda: cat.apply(docs))
    notes = {
        "koleo_weight": cat.params["koleo_weight"],
        "selection_recall_at_10": cat.params["selection_recall_at_10"],
        "n_train": cat.params["n_train"],
        "final_epoch": cat.params["history"][-1],
        "apply_database_s": round(apply_s, 3),
    }
    if config.quantizer is Quantizer.SIGN:
        codes = pack_signs(y)
        hamming = binary_index(codes)
        row = Row(name, config.bits, codes.shape[1], {}, train_s, apply_s, notes)
        return row, lambda q, r: hamming.search(pack_signs(cat.apply(q)), r)[1], cat
    codec = LatticeCodec()
    points, encode_s = _timed(lambda: codec.decode(codec.encode(y)))
    index = lattice_index(points)
    row = Row(name, 64, 24, {}, train_s, apply_s + encode_s, notes)
    return row, lambda q, r: index.search(cat.apply(q), r)[1], cat


def costs(
    docs: np.ndarray, queries: np.ndarray, sign_cat: Any, lattice_cat: Any, repeats: int
) -> dict[str, float]:
    """Per-query and per-vector costs (best of ``repeats``), one search thread."""

    def best(fn: Callable[[], Any]) -> float:
        return min(_timed(fn)[1] for _ in range(repeats))

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    out: dict[str, float] = {}
    single = queries[:200]
    for name, cat in (("sign", sign_cat), ("lattice", lattice_cat)):
        out[f"apply_{name}_{cat.d_out}d_per_query_single_us"] = (
            best(lambda c=cat: [c.apply(single[i : i + 1]) for i in range(len(single))])
            / len(single)
            * 1e6
        )
        out[f"apply_{name}_{cat.d_out}d_per_query_batch_us"] = (
            best(lambda c=cat: c.apply(queries)) / len(queries) * 1e6
        )
    q = queries[:200]
    pairs = len(docs) * len(q)
    hamming = binary_index(pack_signs(sign_cat.apply(docs)))
    qcodes = pack_signs(sign_cat.apply(q))
    out[f"hamming{sign_cat.d_out}_scan_per_vector_ns"] = (
        best(lambda: hamming.search(qcodes, 10)) / pairs * 1e9
    )
    codec = LatticeCodec()
    y_db = lattice_cat.apply(docs)
    codes = codec.encode(y_db)
    index = lattice_index(codec.decode(codes))
    y_q = lattice_cat.apply(q)
    out["lattice_int8_scan_per_vector_ns"] = best(lambda: index.search(y_q, 10)) / pairs * 1e9
    out["lattice_decode_per_code_ns"] = best(lambda: codec.decode(codes)) / len(codes) * 1e9
    out["lattice_encode_per_vector_ns"] = best(lambda: codec.encode(y_db[:5000])) / 5000 * 1e9
    flat = faiss.IndexFlatIP(docs.shape[1])
    flat.add(docs)
    out["float32_flat_scan_per_vector_ns"] = best(lambda: flat.search(q, 10)) / pairs * 1e9
    faiss.omp_set_num_threads(threads)
    return {k: round(v, 2) for k, v in out.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    ds = debian.load(args.variant, n_docs=args.n_docs, n_train=1, n_test=args.n_test, gt_k=100)
    docs, queries, truth = ds.docs, ds.test_queries, ds.test_gt
    metric = faiss.METRIC_L2 if args.variant == "cos" else faiss.METRIC_INNER_PRODUCT
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    base = CatalyzerConfig(epochs=args.epochs, max_points=args.max_points, seed=args.seed)
    rows: list[tuple[Row, Searcher]] = []
    for bits in args.bits:
        log(f"plain codes at {bits} bits")
        rows += [sign_rotation(docs, bits), itq(docs, bits)]
    log("pq, opq, lattice without catalyzer")
    rows += [pq(docs, metric, rotate=False), pq(docs, metric, rotate=True), lattice_rotation(docs)]
    sign_cats = []
    for bits in args.bits:
        row, search, cat = catalyzer(docs, replace(base, bits=bits), log)
        rows.append((row, search))
        sign_cats.append(cat)
    row, search, lattice_cat = catalyzer(docs, replace(base, quantizer=Quantizer.LATTICE), log)
    rows.append((row, search))
    for row, search in rows:
        row.recall = one_recall(search(queries, max(RS)), truth)
    return {
        "variant": args.variant,
        "n_docs": len(docs),
        "n_queries": len(queries),
        "catalyzer_config": asdict(base) | {"quantizer": "per row"},
        "rows": [asdict(r) for r, _ in rows],
        "costs": costs(docs, queries, sign_cats[0], lattice_cat, args.repeats),
    }


def print_tables(report: dict[str, Any]) -> None:
    print(
        f"\n{report['variant']}: {report['n_docs']} docs, {report['n_queries']} test queries; "
        "1-recall@R = exact nearest neighbour in the top R by the codes"
    )
    print(
        f"{'method':<20}{'bits':>5}{'scan B':>7}{'1-R@1':>8}{'1-R@10':>8}{'1-R@100':>8}"
        f"{'train s':>9}{'encode s':>9}  notes"
    )
    for r in sorted(report["rows"], key=lambda r: (r["bits"], -r["recall"]["1-R@10"])):
        rec = r["recall"]
        lam = r["notes"].get("koleo_weight")
        note = f"λ={lam}" if lam is not None else ""
        print(
            f"{r['method']:<20}{r['bits']:>5}{r['bytes_scanned']:>7}{rec['1-R@1']:>8.3f}"
            f"{rec['1-R@10']:>8.3f}{rec['1-R@100']:>8.3f}{r['train_s']:>9.1f}"
            f"{r['encode_s']:>9.2f}  {note}"
        )
    print("\ncosts (best of repeats; contended 2-core machine):")
    for k, v in report["costs"].items():
        print(f"  {k:<36}{v:>10.2f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variant", choices=("cos", "ip"), default="cos")
    p.add_argument("--n-docs", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--bits", type=int, nargs="+", default=[64, 128])
    p.add_argument("--epochs", type=int, default=CatalyzerConfig.epochs)
    p.add_argument("--max-points", type=int, default=CatalyzerConfig.max_points)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="20k docs, 1,000 queries, 64 bits")
    p.add_argument("--out", type=Path, default=RESULTS / "catalyzer.json")
    args = p.parse_args(argv)
    if args.quick:
        args.n_docs, args.n_test, args.bits = 20_000, 1000, [64]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    print_tables(report)
    # One file, one entry per variant: a cos run keeps the last ip run and vice versa.
    stored = json.loads(args.out.read_text()) if args.out.exists() else {}
    stored[report["variant"]] = report
    args.out.write_text(json.dumps(stored, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
