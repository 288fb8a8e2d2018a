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
- ``rabitq``: ``IndexIVFRaBitQFastScan``, one bit per dimension of the residual, scanned
  in packed blocks (about half the instructions of ``IndexIVFRaBitQ``'s scan: callgrind,
  cos data, 246 lists, 16 probes, 50 candidates: 1.13M against 2.15M per query, same
  recall); the scan computes each probed list's residual itself, so it needs no centre
  term from us;
- ``catalyzer-sign``: paper 003's catalyzer (``catalyzer.py``) maps a vector to ``bits``
  dimensions whose signs are the code, in a ``faiss.IndexBinaryIVF`` (Hamming scan);
- ``catalyzer-lattice``: the catalyzer's 24-d output rounded to the 64-bit spherical Zn
  lattice, the decoded point held as 24 int8 values in an ``IndexIVFScalarQuantizer``
  (``QT_8bit_direct_signed``, inner product); built only once a trained catalyzer is
  attached (``Quantization.with_catalyzer``; ``CodeUnavailable`` until then).

Catalyzer kinds scan in the catalyzer's space: ``list_codes`` maps vectors to what the lists
hold and ``query_codes`` queries to what the scan compares; for the other kinds both are the
prepared vectors themselves. Routing still happens on the raw query.

Codebooks (SQ ranges, PQ centroids, RaBitQ's state) are trained once per clustering and
kind, by whoever trains them first (the worker's quantize or build job), and stored
(``codebook_bytes``: the trained, empty code IVF, faiss-serialised); every API process and
shard replica builds its lists from that stored codebook (``Quantization.with_codebook``),
so codes are equal everywhere. Without one that fits the clustering (data older than
stored codebooks), the codebooks are trained on a sample of the exact vectors when a code
index is built, so a code index always fits its clustering. Catalyzer kinds learn nothing
beyond their stored catalyzer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import faiss
import numpy as np

from app.engine.catalyzer import LATTICE_DIM, Catalyzer, LatticeCodec, sign_codes
from app.engine.clustering import Clustering, auto_nlist
from app.engine.metric import Metric, faiss_metric

# Codebooks are trained on at most this many vectors (PQ: 16 centroids per sub-quantizer
# need a few thousand points; more only slows the build).
TRAIN_SAMPLE = 20_000
# Fewer points than this and a code index is not built: the lists stay float32.
MIN_TRAIN_POINTS = {"sq8": 1, "pq": 256, "rabitq": 1}
PQ_BITS = 4
# faiss's fast-scan kernel that scans query by query (``search_implem_10``). Left to choose
# (0), faiss takes the one that groups queries by list (12), which costs more instructions
# both for one query (callgrind, pq96 on the cos data, 32 probes and 50 candidates: 321k ->
# 240k per scan) and per query of a 200-query batch (255k -> 197k); same distances.
FAST_SCAN_IMPLEM = 10
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
    """A valid kind that cannot be built yet: a catalyzer kind without a trained catalyzer."""


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
    """A collection's code kind and its parameters (``m`` for pq, ``bits`` for catalyzers).

    ``catalyzer``: the trained transform of a catalyzer kind (not part of the description:
    it is trained by the worker and attached with ``with_catalyzer``; equality compares
    the description and the catalyzer's stored version, not its weights).
    """

    kind: CodeKind = CodeKind.NONE
    m: int | None = None
    bits: int | None = None
    catalyzer: Catalyzer | None = field(default=None, repr=False, compare=False)
    catalyzer_version: int | None = None  # the store's version of ``catalyzer``
    # The stored codebook (``codebook_bytes``) and the clustering version it was trained for:
    # the bytes are compared by that version only, and may be absent once built (snapshots).
    codebook: bytes | None = field(default=None, repr=False, compare=False)
    codebook_version: int | None = None

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

    def with_catalyzer(
        self, catalyzer: Catalyzer | None, version: int | None = None
    ) -> Quantization:
        """This description with ``catalyzer`` attached; it must output what the kind codes."""
        if catalyzer is not None:
            if self.kind not in CATALYZER_KINDS:
                raise ValueError(f"{self.kind.value} takes no catalyzer")
            if catalyzer.d_out != self.code_dim(catalyzer.d_in):
                raise ValueError(
                    f"{self.kind.value} (bits {self.bits}) needs a catalyzer with "
                    f"{self.code_dim(catalyzer.d_in)} outputs, not {catalyzer.d_out}"
                )
        return replace(self, catalyzer=catalyzer, catalyzer_version=version)

    def with_codebook(self, codebook: bytes | None, clustering_version: int | None) -> Quantization:
        """This description with the stored codebook trained for ``clustering_version``
        (None, None: none stored, codebooks are trained when lists are built)."""
        if codebook is not None and not self.stores_codebook:
            raise ValueError(f"{self.kind.value} has no codebook")
        version = clustering_version if codebook is not None else None
        return replace(self, codebook=codebook, codebook_version=version)

    def has_codebook_for(self, clustering: Clustering) -> bool:
        """The stored codebook is attached and was trained for ``clustering``."""
        return self.codebook is not None and self.codebook_version == clustering.version

    @property
    def key(self) -> str:
        """The description as one string: what a stored codebook is keyed by."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.to_dict().items()))

    @property
    def stores_codebook(self) -> bool:
        """Codebooks learnt from the vectors (sq8, pq, rabitq), hence worth storing."""
        return self.compressed and self.kind not in CATALYZER_KINDS

    def code_dim(self, dim: int) -> int:
        """Dimensions (bits for sign codes) of what the lists hold for ``dim``-d vectors."""
        if self.kind is CodeKind.CATALYZER_SIGN:
            assert self.bits is not None
            return self.bits
        if self.kind is CodeKind.CATALYZER_LATTICE:
            return LATTICE_DIM
        return dim

    @property
    def compressed(self) -> bool:
        """Codes in the lists (exact vectors kept aside for re-ranking)."""
        return self.kind is not CodeKind.NONE


def default_pq_m(dim: int) -> int:
    """Sub-quantizers when none is asked for: one per 4 dimensions (2 bytes of code per 16
    dimensions, 48 bytes at 384-d), else the smallest divisor of ``dim`` above ``dim / 4``.
    Never fewer: a prime dimension once got one sub-quantizer (a 4-bit code per vector,
    recall@10 0.27 at 17-d) where 17 keep 0.84."""
    least = max(1, -(-dim // 4))
    return next(m for m in range(least, dim + 1) if dim % m == 0)


def _positive_int(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise QuantizationError(f"{key} must be a positive integer")
    return value


# Kinds whose lists are clustered into about sqrt(n) lists rather than 4 sqrt(n): their
# fast-scan kernels read a long list cheaply, so a quarter of the lists trades a routing
# product a quarter the size (985 x 384 floats is 1.5 MB per query, read from memory; 246
# x 384 stay in cache) for longer scans, and wins. Measured on cos (60,631 documents,
# learned routing, 500 queries, 1 thread, interleaved runs; q/s at 246 / 492 / 985 lists):
# rabitq at recall@10 .90: 7,265 (12 probes, 50 candidates) / 6,920 (16, 30) / 4,870
# (16, 30); at .95: 4,065 (32, 50) / 3,720 (40, 50) / 3,360 (40, 50). pq m = dim/4 at .90:
# 8,460 (24, 50) / 7,815 (24, 50) / 5,771 (24, 50); at .95: 5,428 (40, 100) / 5,148 (48,
# 100) / 4,092 (64, 100). Float32 lists keep 4 sqrt(n) (a probe reads 1,536 bytes per
# vector); sq8 and the catalyzer kinds were not measured and keep it too.
SQRT_N_KINDS = frozenset({CodeKind.PQ, CodeKind.RABITQ})
# A clustering whose list count is within this factor of the kind's preferred one is kept
# when the kind changes (the policy reclusters as the collection grows or shrinks anyway).
NLIST_TOLERANCE = 2.0


def preferred_nlist(q: Quantization, n: int) -> int:
    """The lists a clustering of ``n`` vectors gets when none is asked for, for kind ``q``."""
    return auto_nlist(n, 1.0 if q.kind in SQRT_N_KINDS else 4.0)


def reclustering_wanted(q: Quantization, nlist: int, n: int) -> bool:
    """A clustering of ``nlist`` lists over ``n`` vectors is far (more than
    ``NLIST_TOLERANCE`` times) from what kind ``q`` prefers."""
    preferred = preferred_nlist(q, n)
    return max(preferred, nlist) > NLIST_TOLERANCE * min(preferred, nlist)


def min_train_points(q: Quantization) -> int:
    return MIN_TRAIN_POINTS.get(q.kind.value, 1)


def buildable(q: Quantization, total: int, clustering: Clustering) -> bool:
    """Code lists can be built over ``clustering`` for ``total`` points: nothing left to
    learn from them (a stored codebook for ``clustering``, or a catalyzer kind with its
    catalyzer; then even before any point), or enough points to train the codebooks. Until
    then the lists stay float32."""
    if not q.compressed:
        return False
    if q.kind in CATALYZER_KINDS:
        return q.catalyzer is not None
    return q.has_codebook_for(clustering) or total >= min_train_points(q)


def train_code_ivf(
    q: Quantization, dim: int, metric: Metric, clustering: Clustering, sample: np.ndarray
) -> Any:
    """An empty, trained code IVF over ``clustering``'s lists (``sample``: prepared vectors):
    a ``faiss.IndexIVF``, or an ``IndexBinaryIVF`` for sign codes.

    The quantizer holds the representatives and reproduces the clustering's assignment rule
    (``x.r + b`` with ``b = 0``: inner product; with ``b = -|r|^2 / 2``: nearest in L2), so
    faiss's own ``add`` (the only one fast-scan lists offer) places a vector where
    ``Clustering.assign`` would.
    """
    if not q.compressed:
        raise ValueError("kind none has no codes")
    if q.kind in CATALYZER_KINDS:
        return _catalyzer_ivf(q, dim, clustering)
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
        ivf = faiss.IndexIVFRaBitQFastScan(quantizer, dim, clustering.nlist, fm)
    # faiss's Python wrapper keeps ``quantizer`` alive as long as the IVF.
    if len(sample) > TRAIN_SAMPLE:
        rng = np.random.default_rng(0)
        sample = sample[np.sort(rng.choice(len(sample), TRAIN_SAMPLE, replace=False))]
    ivf.train(np.ascontiguousarray(sample, dtype=np.float32))  # the quantizer is kept as is
    set_scan_modes(ivf)
    return ivf


def stored_code_ivf(q: Quantization, dim: int, metric: Metric, clustering: Clustering) -> Any:
    """The empty code IVF of ``q``'s stored codebook, which must be trained for
    ``clustering`` (``has_codebook_for``) and fit the collection."""
    if q.codebook is None or not q.has_codebook_for(clustering):
        raise ValueError("no stored codebook for this clustering")
    ivf = codebook_ivf(q.codebook)
    if ivf.d != dim or ivf.nlist != clustering.nlist or ivf.metric_type != faiss_metric(metric):
        raise ValueError("the stored codebook does not fit the collection or clustering")
    return ivf


def codebook_bytes(ivf: Any) -> bytes:
    """A trained, empty code IVF as stored (faiss's serialisation)."""
    if ivf.ntotal:
        raise ValueError("a codebook is stored empty")
    return bytes(faiss.serialize_index(ivf).tobytes())


def trained_codebook(q: Quantization, clustering: Clustering, sample: np.ndarray) -> bytes:
    """``q``'s codebook trained for ``clustering`` on ``sample`` (prepared vectors), as
    stored: what the build and quantize jobs write for every process to code alike."""
    ivf = train_code_ivf(q, clustering.dim, clustering.metric, clustering, sample)
    return codebook_bytes(ivf)


def codebook_ivf(codebook: bytes) -> Any:
    """The empty code IVF a stored codebook holds, with our scan settings."""
    ivf = faiss.deserialize_index(np.frombuffer(codebook, dtype=np.uint8))
    if not isinstance(ivf, faiss.IndexIVF):
        raise ValueError("a stored codebook holds an IVF")
    set_scan_modes(ivf)
    return ivf


def _catalyzer_ivf(
    q: Quantization, dim: int, clustering: Clustering
) -> faiss.IndexIVF | faiss.IndexBinaryIVF:
    """Empty lists in the catalyzer's space. Their quantizer only fills the slots faiss
    requires (zero centres): vectors are always added with our list numbers and searched
    with our probes, so it never assigns."""
    if q.catalyzer is None:
        raise CodeUnavailable(f"{q.kind.value} needs a trained catalyzer")
    if q.catalyzer.d_in != dim:
        raise ValueError("the catalyzer does not take this dimension")
    d = q.code_dim(dim)
    if q.kind is CodeKind.CATALYZER_SIGN:
        binary_quantizer = faiss.IndexBinaryFlat(d)
        binary_quantizer.add(np.zeros((clustering.nlist, d // 8), np.uint8))
        binary = faiss.IndexBinaryIVF(binary_quantizer, d, clustering.nlist)
        return binary
    quantizer = faiss.IndexFlat(d, faiss.METRIC_INNER_PRODUCT)
    quantizer.add(np.zeros((clustering.nlist, d), np.float32))
    lattice = faiss.IndexIVFScalarQuantizer(
        quantizer,
        d,
        clustering.nlist,
        faiss.ScalarQuantizer.QT_8bit_direct_signed,
        faiss.METRIC_INNER_PRODUCT,
        False,
    )
    lattice.train(np.zeros((1, d), np.float32))  # direct codes: nothing to learn
    set_scan_modes(lattice)
    return lattice


def list_codes(q: Quantization, x: np.ndarray) -> np.ndarray:
    """What the lists hold for prepared vectors ``x``: catalyzer codes, else ``x`` itself."""
    if q.kind not in CATALYZER_KINDS:
        return x
    assert q.catalyzer is not None
    y = q.catalyzer.apply(x)
    if q.kind is CodeKind.CATALYZER_SIGN:
        return sign_codes(y)
    codec = LatticeCodec()
    return np.ascontiguousarray(codec.decode(codec.encode(y)))


def query_codes(q: Quantization, x: np.ndarray) -> np.ndarray:
    """What the scan compares for prepared queries ``x``: sign codes (Hamming) or the
    catalyzer's output (inner product with lattice points, all of one norm), else ``x``."""
    if q.kind not in CATALYZER_KINDS:
        return x
    assert q.catalyzer is not None
    y = q.catalyzer.apply(x)
    return sign_codes(y) if q.kind is CodeKind.CATALYZER_SIGN else y


def set_scan_modes(ivf: Any) -> None:
    """Search settings faiss does not serialise: set on every IVF we build or load.

    faiss's default mode 0 parallelises in ``search`` around ``search_preassigned``, which
    then runs single-threaded; mode 3 splits the queries of a preassigned search across
    OpenMP threads. (faiss's binary IVF has no such switch: it always splits a preassigned
    search over queries.) Fast-scan lists scan with ``FAST_SCAN_IMPLEM``.
    """
    if is_binary(ivf):
        return
    ivf.parallel_mode = 3
    if is_fast_scan(ivf):
        ivf.implem = FAST_SCAN_IMPLEM


def is_binary(ivf: object) -> bool:
    """Sign-code lists: faiss's binary IVF, a separate class family from ``IndexIVF``."""
    return isinstance(ivf, faiss.IndexBinaryIVF)


def code_metric(ivf: faiss.IndexIVF | faiss.IndexBinaryIVF) -> int | None:
    """The faiss metric an IVF's scan compares with; None for Hamming (binary lists)."""
    return None if is_binary(ivf) else int(ivf.metric_type)  # type: ignore[union-attr]


def clone(ivf: Any) -> Any:
    lib: Any = faiss  # clone_binary_index is missing from faiss's stubs
    return lib.clone_binary_index(ivf) if is_binary(ivf) else lib.clone_index(ivf)


def is_fast_scan(ivf: faiss.Index) -> bool:
    """Fast-scan lists: packed blocks, faiss's own add only, no hashtable, no scan stats."""
    return isinstance(ivf, faiss.IndexIVFFastScan)


def needs_centre_distance(ivf: faiss.Index) -> bool:
    """The scan adds the query-to-centre term we pass for residual product codes (RaBitQ's
    fast scan works from each list's centre itself and ignores it)."""
    if isinstance(ivf, faiss.IndexIVFRaBitQFastScan):
        return False
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
# 100, rabitq 50, sq8 20-50); re-ranking costs little next to the scan. Re-checked on cos
# with a learned router (all 5,000 test queries, nprobe 8-64): rabitq at 50 stays within
# .002 of its ceiling at every nprobe (30 already reaches .90 at 16 probes, 40 loses up to
# .005 at 32-64 probes); pq96 needs 100 (at 50 it loses .01-.025: .889 against .905 at 16
# probes, .930 against .955 at 64).
# Catalyzer kinds (bench/results/compressed_catalyzer.*: cos, default catalyzer training,
# learned routing, rerank 50-800 x nprobe 4-128): none reaches 0.95; the fewest candidates
# reaching 0.90 are lattice 400 (.904 at nprobe 64; .845 at 200, best .938 at 800) and sign
# 800 for 64 bits (.902 at nprobe 32; .789 at 200) and 128 bits (.937 at nprobe 64; .898 at
# 400). Sign 128 takes 800, not 400 (.898): the default is for a user who sets nothing.
DEFAULT_RERANK = {
    CodeKind.SQ8: 50,
    CodeKind.PQ: 100,
    CodeKind.RABITQ: 50,
    CodeKind.CATALYZER_SIGN: 800,
    CodeKind.CATALYZER_LATTICE: 400,
}


# Product codes of residuals on raw inner product (norms vary): the large-norm documents MIPS
# ranks first are coded worst, so more candidates are needed. pq m = dim/4 on the ip variant,
# learned routing (2,000 test queries): 100 candidates stop at recall@10 .887 however many
# probes; 300 reach .945 at 32 probes and .958 at 64 (200: .940, 400: .967 at 64).
DEFAULT_RERANK_PQ_IP = 300


def default_rerank(q: Quantization, metric: Metric) -> int:
    if q.kind is CodeKind.PQ and metric is Metric.IP:
        return DEFAULT_RERANK_PQ_IP
    return DEFAULT_RERANK.get(q.kind, 100)
