"""Code kinds: what the IVF lists hold instead of float32 vectors, and the faiss index for each.

A kind is an optional vector transform (paper 003's catalyzer maps x to y) followed by a
faiss IVF code index over the (transformed) vectors. The lists are the clustering's: every
code index here gets the clustering's representatives in its quantizer, so routing stays
ours (``Router.route``, then faiss's ``search_preassigned``) whatever the codes are.

- ``none``: ``IndexIVFFlat`` (float32 lists, exact scores, no re-ranking);
- ``sq8``: ``IndexIVFScalarQuantizer`` QT_8bit, ranges per dimension, not residual (the
  scan then needs no distance to the list's centre);
- ``pq``: ``IndexIVFPQFastScan``, 4-bit sub-quantizer codes of the residual to the list's
  centre, ``m`` sub-quantizers (bytes per code: m / 2); the scan adds the query's distance
  to the centre, which we compute since our router does not;
- ``rabitq``: ``IndexIVFRaBitQ``, one bit per dimension of the rotated residual;
- ``catalyzer-sign`` / ``catalyzer-lattice``: accepted in the description, built only once a
  catalyzer transform is supplied (``CodeUnavailable`` until then).

Codebooks (SQ ranges, PQ centroids) are trained on a sample of the exact vectors whenever
a code index is built, so a code index always fits its clustering.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import faiss
import numpy as np

from app.engine.clustering import Clustering
from app.engine.metric import Metric, faiss_metric

# Codebooks are trained on at most this many vectors (PQ: 16 centroids per sub-quantizer
# need a few thousand points; more only slows the build).
TRAIN_SAMPLE = 20_000
# Fewer points than this and a code index is not built: the lists stay float32.
MIN_TRAIN_POINTS = {"sq8": 1, "pq": 256, "rabitq": 1}
PQ_BITS = 4
SIGN_BITS = (64, 128, 256)
LATTICE_BITS = (64,)


class CodeKind(StrEnum):
    NONE = "none"
    SQ8 = "sq8"
    PQ = "pq"
    RABITQ = "rabitq"
    CATALYZER_SIGN = "catalyzer-sign"
    CATALYZER_LATTICE = "catalyzer-lattice"


class QuantizationError(ValueError):
    """A quantization description that is not valid for the collection (a 422)."""


class CodeUnavailable(RuntimeError):
    """A valid kind that this build cannot construct yet (the catalyzer kinds)."""


_PARAMS: dict[CodeKind, frozenset[str]] = {
    CodeKind.NONE: frozenset(),
    CodeKind.SQ8: frozenset(),
    CodeKind.PQ: frozenset({"m"}),
    CodeKind.RABITQ: frozenset(),
    CodeKind.CATALYZER_SIGN: frozenset({"bits"}),
    CodeKind.CATALYZER_LATTICE: frozenset({"bits"}),
}
CATALYZER_KINDS = frozenset({CodeKind.CATALYZER_SIGN, CodeKind.CATALYZER_LATTICE})


@dataclass(frozen=True)
class Quantization:
    """A collection's code kind and its parameters (``m`` for pq, ``bits`` for catalyzers)."""

    kind: CodeKind = CodeKind.NONE
    m: int | None = None
    bits: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, dim: int) -> Quantization:
        """Check a request's object against ``dim``; fills defaults. QuantizationError if bad."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise QuantizationError("quantization must be an object")
        try:
            kind = CodeKind(str(raw.get("kind")))
        except ValueError:
            offered = ", ".join(k.value for k in CodeKind)
            raise QuantizationError(
                f"unknown quantization kind {raw.get('kind')!r}; one of {offered}"
            ) from None
        unknown = sorted(set(raw) - {"kind"} - _PARAMS[kind])
        if unknown:
            raise QuantizationError(f"unknown parameter(s) for {kind.value}: {', '.join(unknown)}")
        m = _positive_int(raw, "m")
        bits = _positive_int(raw, "bits")
        if kind is CodeKind.PQ:
            m = default_pq_m(dim) if m is None else m
            if dim % m:
                raise QuantizationError(f"pq: m={m} must divide the dimension {dim}")
        if kind is CodeKind.CATALYZER_SIGN:
            bits = SIGN_BITS[0] if bits is None else bits
            if bits not in SIGN_BITS:
                raise QuantizationError(f"catalyzer-sign: bits must be one of {SIGN_BITS}")
        if kind is CodeKind.CATALYZER_LATTICE:
            bits = LATTICE_BITS[0] if bits is None else bits
            if bits not in LATTICE_BITS:
                raise QuantizationError(f"catalyzer-lattice: bits must be one of {LATTICE_BITS}")
        return cls(kind, m, bits)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value}
        if self.m is not None:
            out["m"] = self.m
        if self.bits is not None:
            out["bits"] = self.bits
        return out

    @property
    def compressed(self) -> bool:
        """Codes in the lists (exact vectors kept aside for re-ranking)."""
        return self.kind is not CodeKind.NONE


def default_pq_m(dim: int) -> int:
    """Sub-quantizers when none is asked for: one per 4 dimensions (2 bytes of code per 16
    dimensions, 48 bytes at 384-d), the largest divisor of ``dim`` not above ``dim / 4``."""
    target = max(1, dim // 4)
    return next(m for m in range(target, 0, -1) if dim % m == 0)


def _positive_int(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise QuantizationError(f"{key} must be a positive integer")
    return value


def min_train_points(q: Quantization) -> int:
    return MIN_TRAIN_POINTS.get(q.kind.value, 1)


def train_code_ivf(
    q: Quantization, dim: int, metric: Metric, clustering: Clustering, sample: np.ndarray
) -> faiss.IndexIVF:
    """An empty, trained code IVF over ``clustering``'s lists (``sample``: prepared vectors).

    The quantizer holds the representatives and reproduces the clustering's assignment rule
    (``x.r + b`` with ``b = 0``: inner product; with ``b = -|r|^2 / 2``: nearest in L2), so
    faiss's own ``add`` (the only one fast-scan lists offer) places a vector where
    ``Clustering.assign`` would.
    """
    if q.kind in CATALYZER_KINDS:
        raise CodeUnavailable(
            f"{q.kind.value} needs the catalyzer, which this build does not include yet"
        )
    if not q.compressed:
        raise ValueError("kind none has no codes")
    reps = clustering.representatives
    quantizer = faiss.IndexFlat(dim, _assignment_metric(clustering))
    quantizer.add(reps)
    fm = faiss_metric(metric)
    ivf: faiss.IndexIVF
    if q.kind is CodeKind.SQ8:
        ivf = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, clustering.nlist, faiss.ScalarQuantizer.QT_8bit, fm, False
        )
    elif q.kind is CodeKind.PQ:
        assert q.m is not None
        ivf = faiss.IndexIVFPQFastScan(quantizer, dim, clustering.nlist, q.m, PQ_BITS, fm)
        ivf.by_residual = True
    else:
        ivf = faiss.IndexIVFRaBitQ(quantizer, dim, clustering.nlist, fm)
    # faiss's Python wrapper keeps ``quantizer`` alive as long as the IVF.
    if len(sample) > TRAIN_SAMPLE:
        rng = np.random.default_rng(0)
        sample = sample[np.sort(rng.choice(len(sample), TRAIN_SAMPLE, replace=False))]
    ivf.train(np.ascontiguousarray(sample, dtype=np.float32))  # the quantizer is kept as is
    ivf.parallel_mode = 3
    return ivf


def is_fast_scan(ivf: faiss.Index) -> bool:
    """Fast-scan lists: packed blocks, faiss's own add only, no hashtable, no scan stats."""
    return isinstance(ivf, faiss.IndexIVFFastScan)


def needs_centre_distance(ivf: faiss.Index) -> bool:
    """The scan adds the query-to-centre term itself for residual product codes."""
    return is_fast_scan(ivf) and bool(ivf.by_residual)  # type: ignore[attr-defined]


def _assignment_metric(clustering: Clustering) -> int:
    bias = clustering.bias
    if not bias.any():
        return faiss.METRIC_INNER_PRODUCT
    reps = clustering.representatives
    half_norms = -0.5 * np.einsum("ij,ij->i", reps, reps)
    if not np.allclose(bias, half_norms, rtol=1e-5, atol=1e-6):
        raise ValueError("the clustering's assignment rule is neither inner product nor L2")
    return faiss.METRIC_L2


# Candidates re-scored with exact vectors when a search names none: about the fewest that
# reached recall@10 0.95 in bench/compressed.py (cos, 60,631 documents; pq at m = dim / 4:
# 100, rabitq 50, sq8 20-50); re-ranking costs little next to the scan.
DEFAULT_RERANK = {CodeKind.SQ8: 50, CodeKind.PQ: 100, CodeKind.RABITQ: 50}


def default_rerank(q: Quantization) -> int:
    return DEFAULT_RERANK.get(q.kind, 100)
