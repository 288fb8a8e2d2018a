"""Paper 002's two-level emulator, served in numpy (the worker trains it in torch).

Level 1 scores the lists of the collection's clustering (we reuse its k-means lists as the
paper's clusters, so the emulator and IVF routing are compared on the same partition);
level 2, one model per list, scores that list's members as the query's nearest neighbour.
Two architectures, per level:

- ``paper``: the paper's network. Pointwise (kernel 1) 1-D convolutions with 128, 128 and
  256 channels over the input's coordinates, ReLU, a max-pool after the first, flattened
  into a dense softmax layer. Level 2's input is the query concatenated with its list's
  centroid, as in the paper.
- ``linear``: level 1 is a learned linear router (papers 000/001); level 2 scores member
  ``j`` as ``w_j . q + b_j`` with ``w_j`` initialised from the member's own vector, i.e.
  learned per-point representatives. The centroid half of the paper's input only adds the
  same constant to every member of a list, which a softmax ignores, so it is left out.

Served, the emulator only *proposes* candidates: the service re-scores them exactly.
Member ids are fixed at training; the service drops deleted ones and adds points written
since (see ``app/service/emulator_search.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from app.engine.metric import as_matrix


class Architecture(StrEnum):
    PAPER = "paper"
    LINEAR = "linear"


PAPER_CHANNELS = (128, 128, 256)
CONV_ARRAYS = ("w1", "b1", "w2", "b2", "w3", "b3")
PAPER_POOL = 2  # the paper's max-pool; larger pools bound the dense layer (see ``pool_for``)


def pool_for(length: int, classes: int, max_dense: int, max_positions: int) -> int:
    """The smallest max-pool (at least the paper's 2) that keeps the flattened features times
    ``classes`` within ``max_dense`` weights and the positions after pooling within
    ``max_positions`` (the conv layers' cost): the paper's 100-d inputs fit, 384/768-d do not."""
    pool = PAPER_POOL
    while pool < length and (
        length // pool > max_positions
        or PAPER_CHANNELS[-1] * (length // pool) * classes > max_dense
    ):
        pool += 1
    return pool


@dataclass(frozen=True, eq=False)
class ConvStack:
    """The paper's convolutions; arrays may carry a leading model axis (one stack per list)."""

    w1: np.ndarray  # (128,)      conv 1: 1 channel -> 128, kernel 1
    b1: np.ndarray  # (128,)
    w2: np.ndarray  # (128, 128)  conv 2, kernel 1
    b2: np.ndarray  # (128,)
    w3: np.ndarray  # (256, 128)  conv 3, kernel 1
    b3: np.ndarray  # (256,)
    pool: int

    def features(self, x: np.ndarray, model: int | None = None) -> np.ndarray:
        """(n, 256 * (L // pool)) flattened features of (n, L) inputs, channel-major as
        torch's ``flatten`` of (n, C, L') orders them."""
        w1, b1, w2, b2, w3, b3 = (
            (a if model is None else a[model])
            for a in (self.w1, self.b1, self.w2, self.b2, self.w3, self.b3)
        )
        n, length = x.shape
        kept = (length // self.pool) * self.pool
        h = x[:, None, :kept] * w1[None, :, None] + b1[None, :, None]
        np.maximum(h, 0.0, out=h)
        h = h.reshape(n, w1.shape[0], -1, self.pool).max(axis=3)
        h = np.maximum(np.einsum("oc,ncl->nol", w2, h) + b2[None, :, None], 0.0)
        h = np.maximum(np.einsum("oc,ncl->nol", w3, h) + b3[None, :, None], 0.0)
        return h.reshape(n, -1).astype(np.float32, copy=False)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}_{n}": getattr(self, n) for n in CONV_ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str, pool: int) -> ConvStack:
        got = {n: np.asarray(arrays[f"{prefix}_{n}"], np.float32) for n in CONV_ARRAYS}
        return cls(**got, pool=pool)


@dataclass(frozen=True, eq=False)
class ClusterModel:
    """Level 1: scores of the ``nlist`` lists for a query; higher is better."""

    architecture: Architecture
    weights: np.ndarray  # (nlist, F): F = d for linear, the conv features for paper
    bias: np.ndarray  # (nlist,)
    conv: ConvStack | None = None

    @property
    def nlist(self) -> int:
        return int(self.weights.shape[0])

    def scores(self, q: np.ndarray) -> np.ndarray:
        x = self.conv.features(q) if self.conv is not None else q
        return x @ self.weights.T + self.bias

    def route(self, q: np.ndarray, nprobe: int) -> np.ndarray:
        """(n, nprobe) list numbers, best first."""
        s = self.scores(q)
        nprobe = min(nprobe, self.nlist)
        if nprobe >= self.nlist:
            top = np.broadcast_to(np.arange(self.nlist), s.shape)
        else:
            top = np.argpartition(-s, nprobe - 1, axis=1)[:, :nprobe]
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class NeighbourModels:
    """Level 2: for each list, scores of its members (as they were at training).

    Members of list ``c`` are ``member_ids[offsets[c]:offsets[c + 1]]``; their output rows
    are the same slice of ``weights``/``bias``. ``paper``: one conv stack per list (its
    arrays carry a list axis) over ``[q, centroid_c]``.
    """

    architecture: Architecture
    member_ids: np.ndarray  # (N,) int64 internal ids
    offsets: np.ndarray  # (nlist + 1,) int64
    weights: np.ndarray  # (N, F)
    bias: np.ndarray  # (N,)
    centroids: np.ndarray  # (nlist, d): the paper's second input half
    conv: ConvStack | None = None

    def __post_init__(self) -> None:
        if len(self.offsets) != len(self.centroids) + 1 or self.offsets[-1] != len(self.member_ids):
            raise ValueError("offsets must cover every member, one slice per list")

    @property
    def nlist(self) -> int:
        return len(self.offsets) - 1

    def members(self, c: int) -> np.ndarray:
        return self.member_ids[self.offsets[c] : self.offsets[c + 1]]

    def scores(self, q: np.ndarray, c: int) -> np.ndarray:
        """(n, members of c) scores of prepared queries ``q`` within list ``c``."""
        lo, hi = int(self.offsets[c]), int(self.offsets[c + 1])
        if self.conv is not None:
            x = np.concatenate([q, np.broadcast_to(self.centroids[c], q.shape)], axis=1)
            x = self.conv.features(x, model=c)
        else:
            x = q
        return x @ self.weights[lo:hi].T + self.bias[lo:hi]

    def top(self, q: np.ndarray, c: int, m: int) -> np.ndarray:
        """(n, <= m) member ids of list ``c``, best first, for prepared queries ``q``."""
        s = self.scores(q, c)
        ids = self.members(c)
        if s.shape[1] == 0:
            return np.empty((q.shape[0], 0), np.int64)
        m = min(m, s.shape[1])
        top = np.argpartition(-s, m - 1, axis=1)[:, :m]
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
        return ids[np.take_along_axis(top, order, axis=1)]


@dataclass(frozen=True, eq=False)
class Emulator:
    """Both levels, tied to the clustering (lists) and the store seq they were trained on."""

    level1: ClusterModel
    level2: NeighbourModels
    clustering_version: int
    trained_seq: int  # every point written at or before this seq was seen by training
    version: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.level1.nlist != self.level2.nlist:
            raise ValueError("both levels must cover the same lists")

    @property
    def nlist(self) -> int:
        return self.level1.nlist

    def propose(self, q: np.ndarray, nprobe: int, per_list: int) -> tuple[list[np.ndarray], int]:
        """Candidate ids per prepared query (level 1's ``nprobe`` lists, level 2's best
        ``per_list`` of each), and the members level 2 scored in all."""
        q = as_matrix(q)
        lists = self.level1.route(q, nprobe)
        out: list[np.ndarray] = []
        scored = 0
        for i in range(q.shape[0]):
            parts = []
            for c in lists[i].tolist():
                parts.append(self.level2.top(q[i : i + 1], c, per_list)[0])
                scored += int(self.level2.offsets[c + 1] - self.level2.offsets[c])
            out.append(np.concatenate(parts) if parts else np.empty(0, np.int64))
        return out, scored

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Named arrays for storage (``from_arrays`` inverts it)."""
        l1, l2 = self.level1, self.level2
        arrays = {
            "l1_weights": l1.weights,
            "l1_bias": l1.bias,
            "l2_member_ids": l2.member_ids,
            "l2_offsets": l2.offsets,
            "l2_weights": l2.weights,
            "l2_bias": l2.bias,
            "l2_centroids": l2.centroids,
        }
        if l1.conv is not None:
            arrays |= l1.conv.arrays("l1_conv")
        if l2.conv is not None:
            arrays |= l2.conv.arrays("l2_conv")
        return arrays

    def describe(self) -> dict[str, Any]:
        """Architectures and pools: stored in ``params`` so a row says what it holds."""
        l1, l2 = self.level1, self.level2
        return {
            "level1": str(l1.architecture),
            "level2": str(l2.architecture),
            "level1_pool": l1.conv.pool if l1.conv is not None else None,
            "level2_pool": l2.conv.pool if l2.conv is not None else None,
        }

    @classmethod
    def from_arrays(
        cls,
        arrays: dict[str, np.ndarray],
        params: dict[str, Any],
        *,
        clustering_version: int,
        trained_seq: int,
        version: int,
    ) -> Emulator:
        arch1, arch2 = Architecture(params["level1"]), Architecture(params["level2"])
        conv1 = (
            ConvStack.from_arrays(arrays, "l1_conv", int(params["level1_pool"]))
            if arch1 is Architecture.PAPER
            else None
        )
        conv2 = (
            ConvStack.from_arrays(arrays, "l2_conv", int(params["level2_pool"]))
            if arch2 is Architecture.PAPER
            else None
        )

        def f32(name: str) -> np.ndarray:
            return np.ascontiguousarray(arrays[name], np.float32)

        return cls(
            ClusterModel(arch1, f32("l1_weights"), f32("l1_bias"), conv1),
            NeighbourModels(
                arch2,
                np.asarray(arrays["l2_member_ids"], np.int64),
                np.asarray(arrays["l2_offsets"], np.int64),
                f32("l2_weights"),
                f32("l2_bias"),
                f32("l2_centroids"),
                conv2,
            ),
            clustering_version=clustering_version,
            trained_seq=trained_seq,
            version=version,
            params=dict(params),
        )
