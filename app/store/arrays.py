"""numpy arrays to and from bytes columns.

Point vectors are raw little-endian float32 (compact, and one ``frombuffer`` away from a
matrix); versioned artefacts hold several named arrays, so they are ``.npz`` archives.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

VECTOR_DTYPE = np.dtype("<f4")


def vector_to_bytes(v: np.ndarray) -> bytes:
    return np.ascontiguousarray(v, dtype=VECTOR_DTYPE).tobytes()


def vectors_from_bytes(blobs: list[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.empty((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=VECTOR_DTYPE).reshape(-1, dim).astype(np.float32)


def pack_arrays(**arrays: np.ndarray | None) -> bytes:
    buf = io.BytesIO()
    kept: dict[str, Any] = {k: v for k, v in arrays.items() if v is not None}
    np.savez(buf, **kept)
    return buf.getvalue()


def unpack_arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}
