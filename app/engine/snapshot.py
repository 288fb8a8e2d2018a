"""Snapshots: the whole index in one file, written atomically and checked before loading.

Layout (all of it covered by the checksum except the trailer itself)::

    MAGIC | u64 header length | header JSON | representatives .npy | bias .npy | faiss index
    | catalyzer (npz bytes, catalyzer kinds) | exact vectors: (ids .npy, float32 vectors .npy)
    per block | sha256 of everything before (32 bytes) | END

The header holds the index's dimension, metric and count, the clustering's algorithm,
metric, version and params, the quantization (a catalyzer kind's catalyzer travels with it:
the codes mean nothing without it; sign codes are a faiss binary index; the clustering
version of the stored codebook the lists were coded with, which the IVF holds) and the number of
exact-vector blocks (a
compressed kind's codes cannot be decoded, so its exact vectors travel with it), and the
caller's ``meta`` (e.g. the last applied write seq). Loading puts the exact vectors where
the loading process keeps them (in memory, half precision, or a memory-mapped file).
Writing streams through the hash (faiss writes via a callback), so a large index is never
held twice in memory. Loading hashes the file first and parses only if it matches: a
truncated, partial or bit-flipped file raises ``SnapshotError`` and nothing is built from it.
The file appears under its name only complete: temp file in the same directory, fsync,
rename, fsync of the directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

import faiss
import numpy as np

from app.engine.catalyzer import Catalyzer
from app.engine.clustering import Algorithm, Clustering
from app.engine.codes import Quantization, is_binary
from app.engine.exact import ExactStorage, ExactVectors
from app.engine.ivf import VectorIndex
from app.engine.metric import Metric

MAGIC = b"VRSNAP01"
END = b"VRSNAPOK"
FORMAT = 3
# format 1: no quantization, no exact vectors; 2: no catalyzer, no binary index
READABLE_FORMATS = (1, 2, 3)
EXACT_BLOCK = 65536
_DIGEST = hashlib.sha256().digest_size
_TRAILER = _DIGEST + len(END)
_IO_BLOCK = 1 << 20


class SnapshotError(Exception):
    """The snapshot is missing, truncated, corrupt or from another format."""


class _HashingWriter:
    """A write-only stream that hashes what passes through it."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.hash = hashlib.sha256()

    def write(self, data: bytes | memoryview) -> int:
        self.hash.update(data)
        return self._out.write(data)


class _BoundedReader:
    """Reads at most ``limit`` bytes from ``src``: the payload, never the trailer."""

    def __init__(self, src: BinaryIO, limit: int) -> None:
        self._src = src
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self._left:
            size = self._left
        data = self._src.read(size)
        self._left -= len(data)
        return data

    def exact(self, size: int) -> bytes:
        data = self.read(size)
        if len(data) != size:
            raise SnapshotError("snapshot ends early")
        return data


def save_snapshot(index: VectorIndex, path: Path, meta: dict[str, Any]) -> None:
    """Write the whole index and ``meta`` (JSON-serialisable) to ``path`` atomically.

    Serialises a copy (``VectorIndex.copy``): writers wait only while it is taken.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            out = _HashingWriter(f)
            ivf, clustering, quantization, exact = index.copy_all()
            n_exact = len(exact) if exact is not None else 0
            catalyzer = (
                quantization.catalyzer.to_bytes() if quantization.catalyzer is not None else b""
            )
            header = {
                "format": FORMAT,
                "dim": index.dim,
                "metric": str(index.metric),
                "count": int(ivf.ntotal),
                "clustering": _clustering_header(clustering),
                "quantization": quantization.to_dict(),
                "binary": is_binary(ivf),
                "catalyzer_bytes": len(catalyzer),
                "catalyzer_version": quantization.catalyzer_version,
                "codebook_version": quantization.codebook_version,
                "exact_blocks": None if exact is None else -(-n_exact // EXACT_BLOCK),
                "meta": meta,
            }
            encoded = json.dumps(header, sort_keys=True).encode()
            out.write(MAGIC)
            out.write(struct.pack("<Q", len(encoded)))
            out.write(encoded)
            if clustering is not None:
                for array in (clustering.representatives, clustering.bias):
                    np.lib.format.write_array(out, array, allow_pickle=False)
            writer = faiss.PyCallbackIOWriter(out.write, _IO_BLOCK)  # type: ignore[attr-defined]
            if is_binary(ivf):
                faiss.write_index_binary(ivf, writer)  # type: ignore[call-overload]
            else:
                faiss.write_index(ivf, writer)
            out.write(catalyzer)
            if exact is not None:
                for ids, vecs in exact.blocks(EXACT_BLOCK):
                    np.lib.format.write_array(out, ids, allow_pickle=False)
                    np.lib.format.write_array(out, vecs, allow_pickle=False)
            f.write(out.hash.digest())
            f.write(END)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def load_snapshot(
    path: Path,
    exact_storage: ExactStorage = ExactStorage.FLOAT32,
    exact_dir: Path | None = None,
) -> tuple[VectorIndex, dict[str, Any]]:
    """The index and meta saved at ``path``; ``SnapshotError`` unless the file is intact.

    A compressed kind's exact vectors are loaded into ``exact_storage``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            payload = _verified_payload_size(f)
            f.seek(0)
            return _parse(_BoundedReader(f, payload), exact_storage, exact_dir)
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc}") from exc


def _verified_payload_size(f: BinaryIO) -> int:
    """Hash the payload and compare it with the trailer; returns the payload's size."""
    size = os.fstat(f.fileno()).st_size
    payload = size - _TRAILER
    if payload < len(MAGIC):
        raise SnapshotError("snapshot too short")
    digest = hashlib.sha256()
    left = payload
    while left:
        chunk = f.read(min(_IO_BLOCK, left))
        if not chunk:
            raise SnapshotError("snapshot ends early")
        digest.update(chunk)
        left -= len(chunk)
    trailer = f.read(_TRAILER)
    if trailer[_DIGEST:] != END or trailer[:_DIGEST] != digest.digest():
        raise SnapshotError("snapshot checksum mismatch (truncated or corrupt)")
    return payload


def _parse(
    src: _BoundedReader, exact_storage: ExactStorage, exact_dir: Path | None
) -> tuple[VectorIndex, dict[str, Any]]:
    if src.exact(len(MAGIC)) != MAGIC:
        raise SnapshotError("not a vecroute snapshot")
    (header_len,) = struct.unpack("<Q", src.exact(8))
    try:
        header = json.loads(src.exact(header_len))
        if header["format"] not in READABLE_FORMATS:
            raise SnapshotError(f"unsupported snapshot format {header['format']}")
        metric = Metric(header["metric"])
        clustering = _read_clustering(src, header["clustering"])
        # read_index already returns the concrete class (re-wrapping it would free it twice).
        reader = faiss.PyCallbackIOReader(src.read, _IO_BLOCK)  # type: ignore[attr-defined]
        ivf: Any
        if header.get("binary", False):
            ivf = faiss.read_index_binary(reader)
            if not isinstance(ivf, faiss.IndexBinaryIVF):
                raise SnapshotError("snapshot does not hold a binary IVF index")
        else:
            ivf = faiss.read_index(reader)
            if not isinstance(ivf, faiss.IndexIVF):
                raise SnapshotError("snapshot does not hold an IVF index")
        dim = int(header["dim"])
        quantization = Quantization.parse(header.get("quantization"), dim)
        catalyzer_size = int(header.get("catalyzer_bytes", 0))
        if catalyzer_size:
            catalyzer = Catalyzer.from_bytes(src.exact(catalyzer_size))
            quantization = quantization.with_catalyzer(catalyzer, header.get("catalyzer_version"))
        # The lists were coded with the stored codebook of this clustering (held in the IVF).
        quantization = replace(quantization, codebook_version=header.get("codebook_version"))
        exact = None
        if header.get("exact_blocks") is not None:
            exact = ExactVectors(dim, exact_storage, exact_dir)
            for _ in range(int(header["exact_blocks"])):
                ids = np.lib.format.read_array(src, allow_pickle=False)
                exact.put(ids, np.lib.format.read_array(src, allow_pickle=False))
        index = VectorIndex.from_faiss(dim, metric, ivf, clustering, quantization, exact)
    except SnapshotError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        # A checksum guards against damage; this catches a file written by a buggy writer.
        raise SnapshotError(f"malformed snapshot: {exc}") from exc
    if src.read(1) or index.count != header["count"]:
        raise SnapshotError("snapshot content does not match its header")
    return index, header["meta"]


def _clustering_header(clustering: Clustering | None) -> dict[str, Any] | None:
    if clustering is None:
        return None
    return {
        "algorithm": str(clustering.algorithm),
        "metric": str(clustering.metric),
        "version": clustering.version,
        "params": clustering.params,
    }


def _read_clustering(src: _BoundedReader, header: dict[str, Any] | None) -> Clustering | None:
    if header is None:
        return None
    # format.read_array reads a .npy sequentially (np.load would seek back).
    reps = np.lib.format.read_array(src, allow_pickle=False)
    bias = np.lib.format.read_array(src, allow_pickle=False)
    return Clustering(
        reps,
        bias,
        Algorithm(header["algorithm"]),
        Metric(header["metric"]),
        int(header["version"]),
        dict(header["params"]),
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
