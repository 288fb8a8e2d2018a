"""A stored collection of random points for the worker's jobs to read (not a test module)."""

from __future__ import annotations

import numpy as np

from app.store.collections import create_collection
from app.store.db import Store
from app.store.points import upsert_points
from app.store.seq import next_seq

DIM = 32
N = 3000


def stored_collection(
    store: Store, quantization: dict | None = None, nlist: int | None = None
) -> None:
    """Collection ``c``: ``N`` random ``DIM``-d points, cosine, kmeans, no clustering yet."""
    record = create_collection(
        store,
        name="c",
        dim=DIM,
        metric="cosine",
        nlist=nlist,
        algorithm="kmeans",
        quantization=quantization,
    )
    assert record is not None
    docs = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
    with store.write() as session:
        seq = next_seq(session)
        upsert_points(session, record.id, seq, [str(i) for i in range(N)], docs, [None] * N)
