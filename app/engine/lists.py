"""faiss IVF list plumbing: build, fill, scan, add to, remove from and read an IVF's lists.

Plain functions over one faiss IVF; what the lists mean (which clustering, which codes,
which locks) is ``ivf.VectorIndex``'s business. Every IVF here has its quantizer filled
with the clustering's representatives and is searched through ``search_preassigned``, so
routing stays the caller's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import faiss
import numpy as np

from app.engine.clustering import Clustering
from app.engine.codes import is_binary, is_fast_scan, set_scan_modes
from app.engine.metric import Metric, faiss_metric

HASHTABLE: int = faiss.DirectMap.Hashtable  # type: ignore[attr-defined]  # missing from stubs
NO_MAP: int = faiss.DirectMap.NoMap  # type: ignore[attr-defined]
# Probe widths whose search parameters a thread keeps (adaptive routing varies the width).
KEPT_PARAMS = 64
# Vectors ``fill`` encodes and adds at once: what a code kind's encoder holds for one part.
FILL_ROWS = 8192

_per_thread = threading.local()


def new_ivf(
    dim: int, metric: Metric, clustering: Clustering | None, *, hashtable: bool = True
) -> faiss.IndexIVFFlat:
    """An empty, trained IVF whose quantizer holds the representatives (one zero list if none).

    ``hashtable=False`` leaves the id map to be built once, after the lists are filled.
    """
    reps = clustering.representatives if clustering is not None else np.zeros((1, dim), np.float32)
    quantizer = faiss.IndexFlat(dim, faiss_metric(metric))
    quantizer.add(reps)
    # faiss's Python wrapper keeps ``quantizer`` alive as long as the IVF.
    ivf = faiss.IndexIVFFlat(quantizer, dim, reps.shape[0], faiss_metric(metric))
    if hashtable:
        ivf.set_direct_map_type(HASHTABLE)
    set_scan_modes(ivf)
    return ivf


def fill(
    ivf: faiss.IndexIVF,
    blocks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
    clustering: Clustering | None,
    encode: Callable[[np.ndarray], np.ndarray] | None = None,
) -> None:
    """Bulk-fill the empty lists of ``ivf`` from ``blocks()`` of (ids, prepared vectors), in
    the clustering's lists, ``encode`` giving what code lists hold (e.g. ``list_codes``),
    then build its id map (none for fast-scan lists), once for every id.

    faiss's ``add`` appends entry by entry, so each list grows geometrically and ends up to
    twice its size (about +40% memory on average), leaving the blocks it outgrew behind.
    Here every list is first reserved to its final length (``reserve``): two passes over
    ``blocks()``, the first only assigns. Vectors are added in place, a part at a time.
    """
    mapped = not is_fast_scan(ivf)
    if mapped:
        ivf.set_direct_map_type(NO_MAP)  # not kept up entry by entry: built at the end
    assigns = [assign_lists(clustering, vecs) for _, vecs in blocks()]
    if assigns:
        reserve(ivf, np.bincount(np.concatenate(assigns), minlength=ivf.nlist))
    for (ids, vecs), assign in zip(blocks(), assigns, strict=True):
        for start in range(0, len(ids), FILL_ROWS):
            part = slice(start, start + FILL_ROWS)
            x = np.ascontiguousarray(vecs[part])
            codes = encode(x) if encode is not None else x
            add(ivf, codes, np.ascontiguousarray(assign[part]), np.ascontiguousarray(ids[part]))
    if mapped:
        ivf.set_direct_map_type(HASHTABLE)


def reserve(ivf: faiss.IndexIVF, counts: np.ndarray) -> None:
    """Room in each empty list of ``ivf`` for ``counts[list]`` entries, so that appending
    them never moves a list: faiss's appends grow a list geometrically, up to twice its
    final size, and leave the blocks it outgrew behind. A list resized to its count and back
    to zero keeps the capacity, as a ``std::vector`` does. Fast-scan lists pack their codes
    in blocks of their own and are left as they are."""
    if is_fast_scan(ivf):
        return
    invlists: Any = ivf.invlists
    for list_no in np.flatnonzero(counts).tolist():
        if invlists.list_size(list_no) == 0:
            invlists.resize(list_no, int(counts[list_no]))
            invlists.resize(list_no, 0)


def assign_lists(clustering: Clustering | None, x: np.ndarray) -> np.ndarray:
    if clustering is None:
        return np.zeros(x.shape[0], dtype=np.int64)
    return clustering.assign(x)


def scan(
    ivf: faiss.IndexIVF,
    q: np.ndarray,
    k: int,
    probe: np.ndarray,
    selector: faiss.IDSelector | None,
    coarse: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """faiss's preassigned search: (distances, ids, vectors scored in the probed lists;
    -1 where the index keeps no statistics: fast-scan lists).

    Per-call parameters and statistics, so concurrent searches never share them.
    ``coarse``: each probed list's centre term, for residual codes that need it.
    """
    if is_binary(ivf):
        return _scan_binary(ivf, q, k, probe, selector)
    n, width = probe.shape
    params = _search_params(width, selector)
    distances = np.empty((n, k), dtype=np.float32)
    ids = np.empty((n, k), dtype=np.int64)
    if n == 0:
        return distances, ids, 0
    stats = None if is_fast_scan(ivf) else _scan_stats()
    if coarse is None:
        coarse = np.zeros((n, width), dtype=np.float32)  # unused without residual codes
    swig: Any = ivf  # faiss's stubs miss the SWIG-level C entry point
    swig.search_preassigned_c(
        n,
        faiss.swig_ptr(q),
        k,
        faiss.swig_ptr(probe),
        faiss.swig_ptr(coarse),
        faiss.swig_ptr(distances),
        faiss.swig_ptr(ids),
        False,
        params,
        stats,
    )
    return distances, ids, int(stats.ndis) if stats is not None else -1


def _search_params(width: int, selector: faiss.IDSelector | None) -> faiss.SearchParametersIVF:
    """Parameters of one preassigned search. Unfiltered ones are kept per thread and width:
    faiss only reads them during the call, a thread makes one call at a time, and building
    a SWIG object costs more (~3.5 us) than a single-query scan can spare."""
    if selector is not None:
        params = faiss.SearchParametersIVF()
        params.nprobe = width
        params.sel = selector
        return params
    kept: dict[int, faiss.SearchParametersIVF] | None = getattr(_per_thread, "params", None)
    if kept is None:
        kept = _per_thread.params = {}
    found = kept.get(width)
    if found is None:
        if len(kept) >= KEPT_PARAMS:
            kept.clear()
        found = kept[width] = faiss.SearchParametersIVF()
        found.nprobe = width
    return found


def _scan_stats() -> Any:
    """This thread's scan statistics, reset (one call at a time per thread, as above)."""
    stats = getattr(_per_thread, "stats", None)
    if stats is None:
        stats = _per_thread.stats = faiss.IndexIVFStats()
    stats.reset()
    return stats


def _scan_binary(
    ivf: Any,
    q: np.ndarray,
    k: int,
    probe: np.ndarray,
    selector: faiss.IDSelector | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """``scan`` over sign-code lists: packed ``q`` codes, Hamming distances (as float32),
    -1 statistics (the binary scan keeps none).

    faiss's binary IVF ignores a selector, so a filtered scan ranks every vector of the
    probed lists and keeps the best ``k`` that pass (the selector must be a bitmap, which
    is what filters use): still ``k`` results whenever enough pass.
    """
    n, width = probe.shape
    if n == 0:
        return np.empty((0, k), np.float32), np.empty((0, k), np.int64), 0
    passes = _bitmap(selector) if selector is not None else None
    depth = k
    if passes is not None:
        sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)], np.int64)
        depth = max(k, int(np.where(probe >= 0, sizes[np.maximum(probe, 0)], 0).sum(1).max()))
    distances = np.empty((n, depth), dtype=np.int32)
    ids = np.empty((n, depth), dtype=np.int64)
    params = faiss.SearchParametersIVF()
    params.nprobe = width
    codes = np.ascontiguousarray(q, dtype=np.uint8)
    centre_distances = np.zeros((n, width), dtype=np.int32)  # unused by the scan
    swig: Any = ivf  # faiss's stubs miss the SWIG-level C entry point
    swig.search_preassigned_c(
        n,
        faiss.swig_ptr(codes),
        depth,
        faiss.swig_ptr(probe),
        faiss.swig_ptr(centre_distances),
        faiss.swig_ptr(distances),
        faiss.swig_ptr(ids),
        False,
        params,
    )
    if passes is None:
        return distances.astype(np.float32), ids, -1
    byte = np.clip(ids >> 3, 0, max(len(passes) - 1, 0))
    kept = (ids >= 0) & (ids >> 3 < len(passes)) & ((passes[byte] >> (ids & 7)) & 1 == 1)
    order = np.argsort(~kept, axis=1, kind="stable")[:, :k]  # passing first, rank kept
    rows = np.arange(n)[:, None]
    top_ids = np.where(kept[rows, order], ids[rows, order], -1)
    return distances[rows, order].astype(np.float32), top_ids, -1


def _bitmap(selector: faiss.IDSelector) -> np.ndarray:
    """The bytes of a bitmap selector (bit ``id`` of the little-endian bitmap: passes)."""
    if not isinstance(selector, faiss.IDSelectorBitmap):
        raise TypeError("sign-code lists filter with a bitmap selector only")
    bitmap: Any = selector  # faiss's stubs miss the bitmap's fields
    return faiss.rev_swig_ptr(bitmap.bitmap, bitmap.n).copy()


def add(ivf: faiss.IndexIVF, x: np.ndarray, assign: np.ndarray, ids: np.ndarray) -> None:
    if is_fast_scan(ivf):
        # Packed lists take entries only through faiss's add, which assigns with the
        # quantizer: it reproduces the clustering's rule (codes.train_code_ivf).
        ivf.add_with_ids(x, ids)
        return
    ivf.add_core(len(ids), faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(assign))


def remove(ivf: faiss.IndexIVF, ids: np.ndarray) -> int:
    if len(ids) == 0:
        return 0
    if is_fast_scan(ivf):
        # No id map on packed lists: one pass over the lists, ids tested in a hash set.
        return int(ivf.remove_ids(faiss.IDSelectorBatch(len(ids), faiss.swig_ptr(ids))))
    # The hashtable direct map removes in O(1) per id, but only through an IDSelectorArray.
    return int(ivf.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))


def read_list(
    ivf: faiss.IndexIVF, list_no: int, passes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Copies of one list's ids and vectors; with ``passes`` (bools by id, the last one
    standing for every id beyond), of those whose id passes only, and only those are read."""
    invlists: Any = ivf.invlists  # faiss's stubs type it Optional and miss release_*
    size = invlists.list_size(list_no)
    if not size:
        return np.empty(0, np.int64), np.empty((0, ivf.d), np.float32)
    id_ptr = invlists.get_ids(list_no)
    code_ptr = invlists.get_codes(list_no)
    try:
        ids = faiss.rev_swig_ptr(id_ptr, size)  # views of faiss's memory, copied below
        codes = faiss.rev_swig_ptr(code_ptr, size * ivf.code_size)
        vecs = codes.view(np.float32).reshape(size, ivf.d)
        if passes is None:
            return ids.copy(), vecs.copy()
        keep = passes[np.minimum(ids, len(passes) - 1)]
        return ids[keep], vecs[keep]  # boolean indexing copies
    finally:
        invlists.release_ids(list_no, id_ptr)
        invlists.release_codes(list_no, code_ptr)
