"""Bulk import from a file: batches of points for ``Service.index_points``, the code path
``POST /index`` uses (same validation, one atomic store transaction per batch).

Formats: ``.npy`` (an (n, dim) matrix; ids from a side file, else the row numbers) and
``.jsonl`` / ``.jsonl.gz`` (one ``{"id", "vector", "payload"?}`` object per line).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from app.service.errors import InvalidInput

Batch = list[dict[str, Any]]


@dataclass(frozen=True)
class ImportSource:
    """A file of points, read lazily in batches; ``total`` is known up front for progress."""

    path: Path
    total: int
    ids: list[Any] | None = None  # of a .npy file, read once when the source was opened

    def batches(self, size: int) -> Iterator[Batch]:
        if _is_jsonl(self.path):
            yield from _jsonl_batches(self.path, size)
        else:
            yield from _npy_batches(self.path, self.ids, size)


def open_source(path: Path, ids_path: Path | None = None) -> ImportSource:
    if _is_jsonl(path):
        if ids_path is not None:
            raise InvalidInput("--ids applies to .npy files; JSONL lines carry their ids")
        with _open_text(path) as f:
            total = sum(1 for line in f if line.strip())
        return ImportSource(path, total)
    if path.suffix != ".npy":
        raise InvalidInput(f"{path}: expected a .npy, .jsonl or .jsonl.gz file")
    matrix = np.load(path, mmap_mode="r")
    if matrix.ndim != 2:
        raise InvalidInput(f"{path}: expected an (n, dim) matrix, got shape {matrix.shape}")
    ids = _load_ids(ids_path) if ids_path is not None else None
    if ids is not None and len(ids) != len(matrix):
        raise InvalidInput(f"{ids_path}: expected {len(matrix)} ids, one per row")
    return ImportSource(path, len(matrix), ids)


def _is_jsonl(path: Path) -> bool:
    return path.name.endswith((".jsonl", ".jsonl.gz"))


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _jsonl_batches(path: Path, size: int) -> Iterator[Batch]:
    batch: Batch = []
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                point = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise InvalidInput(f"{path}:{number}: not valid JSON") from None
            batch.append(point)
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


def _load_ids(path: Path) -> list[Any]:
    """Ids from a .npy array (strings or integers) or a text file with one id per line."""
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).tolist()
    return path.read_text(encoding="utf-8").splitlines()


def _npy_batches(path: Path, ids: list[Any] | None, size: int) -> Iterator[Batch]:
    matrix = np.load(path, mmap_mode="r")
    for start in range(0, len(matrix), size):
        rows = np.asarray(matrix[start : start + size]).tolist()
        keys = ids[start : start + size] if ids is not None else range(start, start + len(rows))
        yield [{"id": key, "vector": row} for key, row in zip(keys, rows, strict=True)]
