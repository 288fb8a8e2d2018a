"""The shared Debian MiniLM data set (``../shared/data/debian``), whole or as a slice.

Used by the benchmarks (all of it) and the tests (small slices). A slice keeps the first
``n_docs`` documents and recomputes exact ground truth over them, since the shipped ground
truth refers to the whole collection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from app.engine.metric import Metric, normalize

ROOT = Path(__file__).resolve().parent.parent
# Beside the checkout (../shared), else the workspace's copy, which a clone made elsewhere
# (e.g. a CI clone under /tmp) still finds; VECROUTE_DEBIAN_DATA overrides both.
CANDIDATES = (ROOT.parent / "shared" / "data" / "debian", Path("/work/shared/data/debian"))


def _data_dir() -> Path:
    if "VECROUTE_DEBIAN_DATA" in os.environ:
        return Path(os.environ["VECROUTE_DEBIAN_DATA"])
    return next((d for d in CANDIDATES if (d / "ip" / "docs.npy").exists()), CANDIDATES[0])


DATA_DIR = _data_dir()


@dataclass(frozen=True)
class Dataset:
    """Vectors as stored (cosine: already unit-norm), queries, and exact top-k ground truth."""

    metric: Metric
    docs: np.ndarray
    train_queries: np.ndarray
    test_queries: np.ndarray
    train_gt: np.ndarray  # (n_train, >=10) row indices into docs, best first
    test_gt: np.ndarray  # (n_test, >=10)


def available() -> bool:
    return (DATA_DIR / "ip" / "docs.npy").exists()


def require() -> None:
    """Fail, not skip, without the data: the tests on it are part of the specification."""
    if not available():
        raise FileNotFoundError(
            f"the shared Debian data is not at {DATA_DIR}: put it beside the checkout "
            "(../shared/data/debian) or set VECROUTE_DEBIAN_DATA"
        )


def load(
    variant: str = "ip",
    n_docs: int | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    gt_k: int = 10,
) -> Dataset:
    """``variant`` is ``ip`` (raw vectors, MIPS) or ``cos`` (unit-norm vectors)."""
    if variant not in ("ip", "cos"):
        raise ValueError("variant must be 'ip' or 'cos'")
    require()
    ip = DATA_DIR / "ip"
    docs = np.load(ip / "docs.npy", mmap_mode="r")[:n_docs].astype(np.float32)
    train = np.load(ip / "queries_train.npy", mmap_mode="r")[:n_train].astype(np.float32)
    test = np.load(ip / "queries_test.npy", mmap_mode="r")[:n_test].astype(np.float32)
    if variant == "cos":
        docs, train, test = normalize(docs), normalize(train), normalize(test)
    metric = Metric.IP if variant == "ip" else Metric.COSINE
    if n_docs is None:
        gt_dir = DATA_DIR / variant
        train_gt = np.load(gt_dir / "gt_train_top10.npy")[: len(train)].astype(np.int64)
        test_gt = np.load(gt_dir / "gt_test_top100.npy")[: len(test)].astype(np.int64)
    else:
        train_gt = exact_top(docs, train, gt_k)
        test_gt = exact_top(docs, test, gt_k)
    return Dataset(metric, docs, train, test, train_gt, test_gt)


def exact_top(docs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the exact top-k by inner product (the data is already prepared)."""
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(docs)
    return index.search(queries, k)[1].astype(np.int64)
