"""Paper 003's catalyzer at serving time: numpy forward pass and the codes it feeds.

The catalyzer is an MLP d → 1024 → 1024 → d_out whose output is L2-normalised: trained
(``worker/train_catalyzer.py``, torch) so that neighbours stay neighbours and points spread
uniformly over the sphere, it adapts the data to a *fixed* quantizer instead of learning the
quantizer. Serving needs only its weights: BatchNorm is folded into the linear layers at
export, so ``apply`` is three matmuls, two ReLUs and a normalisation, in numpy (this module
never imports torch).

Two fixed quantizers follow it:
- **sign bits** (d_out = bits, 64/128/256): one bit per output coordinate, packed in bytes
  as faiss's ``IndexBinary*`` expect, compared by Hamming distance.
- **the spherical Zn lattice** at 64 bits (d_out 24, r² 79, faiss ``ZnSphereCodec``): the
  code is the index of the nearest integer point of norm² 79. A decoded point has integer
  coordinates in [-8, 8], so it fits exactly in 24 int8 values: faiss's
  ``IndexScalarQuantizer`` with ``QT_8bit_direct_signed`` scans those directly (every point
  has the same norm, so the inner product with the query ranks them like the angle does);
  decoding the 8-byte codes instead costs ~2.5 µs per candidate (``bench/catalyzer.py``
  measures both).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from app.engine.metric import as_matrix, normalize

SIGN_BITS = (64, 128, 256)
LATTICE_DIM = 24
LATTICE_R2 = 79  # 24-d points of norm² 79: 1.7e19 of them, an index fits in 64 bits
LATTICE_BITS = 64


@dataclass(frozen=True, eq=False)
class Catalyzer:
    """Folded weights of the MLP: ``layers[i] = (W (d_i, d_{i+1}), b (d_{i+1},))``.

    ReLU follows every layer but the last; the output is L2-normalised. ``params`` holds the
    training hyperparameters and statistics (hyperparameters are data).
    """

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("a catalyzer has at least one layer")
        as_f32 = tuple(
            (np.ascontiguousarray(w, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32))
            for w, b in self.layers
        )
        object.__setattr__(self, "layers", as_f32)
        for (w, b), nxt in zip(self.layers, self.layers[1:], strict=False):
            if w.shape[1] != nxt[0].shape[0]:
                raise ValueError("consecutive layers do not chain")
            if b.shape != (w.shape[1],):
                raise ValueError("bias does not match its layer")
        w, b = self.layers[-1]
        if b.shape != (w.shape[1],):
            raise ValueError("bias does not match its layer")

    @property
    def d_in(self) -> int:
        return int(self.layers[0][0].shape[0])

    @property
    def d_out(self) -> int:
        return int(self.layers[-1][0].shape[1])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(n, d_in) vectors → (n, d_out) float32 unit vectors."""
        h = as_matrix(x, self.d_in)
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            h = h @ w
            h += b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return normalize(h)

    def to_bytes(self) -> bytes:
        """npz (no pickle): the weights and the params as JSON, for versions and snapshots."""
        arrays: dict[str, Any] = {}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        arrays["params"] = np.frombuffer(json.dumps(self.params).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Catalyzer:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            n = sum(1 for key in z.files if key.startswith("w"))
            layers = tuple((z[f"w{i}"], z[f"b{i}"]) for i in range(n))
            params = json.loads(z["params"].tobytes().decode())
        return cls(layers, params)


def sign_codes(y: np.ndarray) -> np.ndarray:
    """(n, bits) → (n, bits / 8) uint8: bit j of a vector is set iff y_j > 0.

    Little bit order within each byte; Hamming distance is a popcount of XOR, so any fixed
    order works for faiss ``IndexBinaryFlat``/``IndexBinaryIVF`` as long as queries and
    database share it.
    """
    m = as_matrix(y)
    if m.shape[1] % 8:
        raise ValueError(f"sign codes need a multiple of 8 bits, got {m.shape[1]}")
    return np.packbits(m > 0, axis=1, bitorder="little")


def binary_index(codes: np.ndarray) -> faiss.IndexBinaryFlat:
    """An exhaustive Hamming scanner over packed sign codes."""
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(np.ascontiguousarray(codes, dtype=np.uint8))
    return index


class LatticeCodec:
    """The 64-bit spherical Zn code of paper 003 (d 24, r² 79), by faiss's ``ZnSphereCodec``."""

    def __init__(self, dim: int = LATTICE_DIM, r2: int = LATTICE_R2) -> None:
        self.dim, self.r2 = dim, r2
        self._codec = faiss.ZnSphereCodec(dim, r2)  # type: ignore[attr-defined]  # not in stubs
        if self._codec.nv > 2**64 - 1:
            raise ValueError("the lattice has too many points for a 64-bit code")

    def encode(self, y: np.ndarray) -> np.ndarray:
        """(n, dim) directions (any norm) → (n,) uint64 index of the nearest lattice point."""
        m = as_matrix(y, self.dim)
        codes = np.empty(len(m), dtype=np.uint64)
        self._codec.encode_multi(len(m), faiss.swig_ptr(m), faiss.swig_ptr(codes))
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(n,) uint64 → (n, dim) float32 lattice points: integer coordinates, norm² r2."""
        c = np.ascontiguousarray(codes, dtype=np.uint64)
        out = np.empty((len(c), self.dim), dtype=np.float32)
        self._codec.decode_multi(len(c), faiss.swig_ptr(c), faiss.swig_ptr(out))
        return out

    def quantize(self, y: np.ndarray) -> np.ndarray:
        """The nearest lattice point, as a unit vector (what the codes reconstruct)."""
        return self.decode(self.encode(y)) / np.float32(np.sqrt(self.r2))


def lattice_index(points: np.ndarray) -> faiss.IndexScalarQuantizer:
    """Decoded lattice points held as 24 int8 values each, scanned by inner product.

    ``QT_8bit_direct_signed`` stores an integer v in [-128, 127] as the byte v + 128 and
    decodes it exactly, so the scan computes the query's inner product with the exact
    lattice point.
    """
    m = as_matrix(points)
    if np.abs(m).max(initial=0.0) > 127 or not np.array_equal(m, np.round(m)):
        raise ValueError("lattice points must have small integer coordinates")
    index = faiss.IndexScalarQuantizer(
        m.shape[1], faiss.ScalarQuantizer.QT_8bit_direct_signed, faiss.METRIC_INNER_PRODUCT
    )
    index.add(m)
    return index
