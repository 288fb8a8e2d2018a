"""The ``quantize`` job: check that a collection can hold the codes asked for, then record them.

Like ``build``, it reads and writes only the store: it trains the codebooks once on the
collection's vectors (so a kind that cannot be built fails here, with the reason on the
job, and nothing changes), then records the quantization; every API process rebuilds its
index with the new codes when it catches up, aside, and swaps it in (searches go on; if
its rebuild fails, it keeps serving the old index). The codebooks trained here are stored
with the quantization (with the clustering, when the job re-clusters), and every API
process and shard replica codes its lists with them, so codes are equal everywhere.

A catalyzer kind is different: its catalyzer (paper 003) is trained here once, with torch
(``worker/train_catalyzer.py``, progress on the job; the job then runs in a child process,
``worker/child.py``, so torch never enters the worker's own), and stored as a new version with the
quantization in one transaction; every API process loads that same catalyzer from the store
(numpy only) and codes its lists with it.

Kinds prefer different list counts (``codes.preferred_nlist``). When the collection names
none and its clustering is far from what the new kind prefers, the job also re-clusters it
(the ``build`` job's work, with the new kind's count), once the codes are known to build,
then records the codes: API processes swap in both as they catch up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.engine.catalyzer import Catalyzer
from app.engine.codes import (
    CATALYZER_KINDS,
    TRAIN_SAMPLE,
    CodeKind,
    Quantization,
    QuantizationError,
    min_train_points,
    preferred_nlist,
    reclustering_wanted,
    trained_codebook,
)
from app.engine.metric import Metric, prepare
from app.store import counters
from app.store.codebooks import NewCodebook
from app.store.collections import get_collection, set_quantization
from app.store.db import Store
from app.store.points import sample_live_points
from app.store.versions import load_clustering
from worker.build import run_build

Progress = Callable[[float], None]


@dataclass(frozen=True)
class CatalyzerBudget:
    """The worker's settings for training catalyzers (``app/settings.py``)."""

    min_points: int = 2000
    epochs: int = 10
    hidden: int = 1024


class QuantizeError(RuntimeError):
    """The codes cannot be built for this collection; retrying will not help."""

    permanent = True


def trains_catalyzer(params: Mapping[str, Any]) -> bool:
    """The job asks for a catalyzer kind: it trains with torch (and runs in a child)."""
    raw = params.get("quantization")
    return isinstance(raw, Mapping) and raw.get("kind") in {k.value for k in CATALYZER_KINDS}


def run_quantize(
    store: Store,
    collection: str,
    params: dict[str, Any],
    progress: Progress,
    budget: CatalyzerBudget | None = None,
) -> dict:
    started = time.perf_counter()
    budget = budget or CatalyzerBudget()
    with store.read() as session:
        record = get_collection(session, collection)
        if record is None:
            raise QuantizeError(f"collection {collection!r} no longer exists")
        try:
            quantization = Quantization.parse(params.get("quantization"), record.dim)
        except QuantizationError as exc:
            raise QuantizeError(str(exc)) from None
        total = counters.live_points(session, record.id)
        clustering = (
            load_clustering(session, record.id, record.clustering_version)
            if record.clustering_version is not None
            else None
        )
        # A new clustering brings its own codebook (the build trains and stores it): none
        # is trained here for the clustering it replaces.
        recluster = (
            clustering is not None
            and record.nlist is None
            and reclustering_wanted(quantization, clustering.nlist, total)
        )
        catalyzed = quantization.kind in CATALYZER_KINDS
        coded = clustering is not None and quantization.compressed and not recluster
        sample = None
        if coded or catalyzed:
            sample = sample_live_points(session, record.id, record.dim, TRAIN_SAMPLE)
    weights = None
    if catalyzed:
        if total < budget.min_points:
            raise QuantizeError(
                f"{quantization.kind.value} trains its catalyzer on at least "
                f"{budget.min_points} points; {collection!r} holds {total}"
            )
        assert sample is not None
        metric = Metric(record.metric)
        catalyzer = _train_catalyzer(
            quantization, prepare(sample, metric, record.dim), budget, progress
        )
        weights = catalyzer.to_bytes()
    else:
        progress(0.5)
    codebook = None
    needed = min_train_points(quantization)
    if not catalyzed and quantization.compressed and clustering is not None and total < needed:
        raise QuantizeError(
            f"{quantization.kind.value} trains its codebooks on at least {needed} points; "
            f"{collection!r} holds {total}"
        )
    if not catalyzed and coded:
        assert clustering is not None and sample is not None
        prepared = prepare(sample, clustering.metric, record.dim)
        trained = trained_codebook(quantization, clustering, prepared)
        codebook = NewCodebook(quantization.key, trained, clustering.version)
    progress(0.9)
    reclustered = None
    if recluster:
        nlist = preferred_nlist(quantization, total)
        built = run_build(
            store, collection, {"nlist": nlist}, lambda f: progress(0.9 + 0.09 * f), quantization
        )
        reclustered = built["clustering_version"]
    stored = quantization.to_dict() if quantization.compressed else None
    if set_quantization(store, collection, stored, weights, codebook) is None:
        raise QuantizeError(f"collection {collection!r} no longer exists")
    return {
        "quantization": quantization.to_dict(),
        "n_points": total,
        "waits_for_clustering": clustering is None,  # codes come with the first build
        "reclustered_version": reclustered,  # None: the clustering was kept
        "seconds": round(time.perf_counter() - started, 3),
    }


def _train_catalyzer(
    quantization: Quantization, x: np.ndarray, budget: CatalyzerBudget, progress: Progress
) -> Catalyzer:
    """Train with torch, imported here only: the job (in a child process) is the only place
    that needs it."""
    from worker.train_catalyzer import CatalyzerConfig, Quantizer, train_catalyzer

    quantizer = (
        Quantizer.SIGN if quantization.kind is CodeKind.CATALYZER_SIGN else Quantizer.LATTICE
    )
    assert quantization.bits is not None
    config = CatalyzerConfig(
        quantizer=quantizer, bits=quantization.bits, epochs=budget.epochs, hidden=budget.hidden
    )
    return train_catalyzer(x, config, lambda f: progress(0.85 * f))
