"""One shard's lists: the engine-level half of a sharded collection, with no Ray in it.

A shard holds the points of a collection whose list (as the store labels it, else by the
clustering's own assignment rule) is one of its lists, in a ``VectorIndex`` of the *whole*
clustering: the lists it does not own stay empty. A search gets the coordinator's probe
lists for the whole clustering; the lists of other shards are blanked to -1 (faiss's
preassigned search skips them), so each shard scans exactly its part of what the
single-process index would scan, and merging the shards' top-k gives the single-process
top-k.

Lists of codes (a quantization kind): the shard holds codes and the exact vectors of its
points (``ExactStorage``, as an API process would), coded with the collection's stored
codebook (or catalyzer), scans its probed lists' codes and re-ranks its own best
``rerank`` candidates exactly. Each shard's best ``rerank`` include every one of the
single-process best ``rerank`` that it holds, so the shards together re-rank a superset of
what one process would, and their exact top-k merged is at least as good.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from app.engine.clustering import Clustering
from app.engine.codes import Quantization
from app.engine.exact import ExactStorage
from app.engine.ivf import VectorIndex
from app.engine.metric import Metric, prepare

# A reserved list gets 1/HEADROOM more room than its count (``ShardIndex.reserve``).
HEADROOM = 32


@dataclass(frozen=True)
class ShardHits:
    """One shard's answer to a batch: its own top-k per query and the vectors it scored."""

    scores: np.ndarray  # (n, k) float32, higher is better; -inf padding
    ids: np.ndarray  # (n, k) int64; -1 padding
    scanned: int  # vectors scored over the whole batch
    candidates: int = 0  # code candidates re-scored exactly over the whole batch


class ShardIndex:
    """The points of ``lists`` (list numbers of ``clustering``) and nothing else."""

    def __init__(
        self,
        dim: int,
        metric: Metric,
        clustering: Clustering,
        lists: np.ndarray,
        index: VectorIndex | None = None,
        codes: Quantization | None = None,
        exact_storage: ExactStorage = ExactStorage.FLOAT32,
        exact_dir: Path | None = None,
    ) -> None:
        """``index``: the shard's lists as loaded (a shard snapshot), else empty, for lists
        of ``codes`` (their stored codebook or catalyzer attached; exact vectors kept in
        ``exact_storage``)."""
        owned = np.asarray(lists, dtype=np.int64)
        if owned.ndim != 1 or (owned.size and (owned.min() < 0 or owned.max() >= clustering.nlist)):
            raise ValueError(f"lists must be list numbers in [0, {clustering.nlist})")
        self.clustering = clustering
        if index is None:
            index = VectorIndex(dim, metric, clustering, codes, exact_storage, exact_dir)
        self.index = index
        # One extra False at the end: a padded probe (-1) indexes it and is never owned.
        self._owns = np.zeros(clustering.nlist + 1, dtype=bool)
        self._owns[owned] = True
        self.lists = np.flatnonzero(self._owns[:-1])

    @property
    def count(self) -> int:
        return self.index.count

    def upsert(self, ids: np.ndarray, vectors: np.ndarray, lists: np.ndarray | None = None) -> int:
        """Take the points whose list is ours; any other id written is dropped from here
        (an updated vector may have moved to another shard's list). Returns how many stay.

        ``lists``: each point's list as the store labels it, -1 (or None for all) where it
        is not labelled for this clustering: those are assigned here."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        lists = np.full(len(ids), -1, np.int64) if lists is None else np.array(lists, np.int64)
        unknown = lists < 0
        if unknown.any():
            index = self.index
            x = prepare(vectors[unknown], index.metric, index.dim)
            lists[unknown] = self.clustering.assign(x)
        mine = self._owns[lists]
        self.index.remove(ids[~mine])
        self.index.upsert(ids[mine], vectors[mine], (self.clustering.version, lists[mine]))
        return int(np.count_nonzero(mine))

    def reserve(self, counts: np.ndarray) -> None:
        """Room in our lists for about ``counts[list]`` points each (the others' counts are
        not ours), before a load a block at a time (``VectorIndex.reserve``). Counts from
        the store's labels may fall short (rows not labelled for this clustering, rows
        written between the count and the read), and a list one entry over its room
        doubles: each gets ~3% more, and 2."""
        room = counts + counts // HEADROOM + 2
        self.index.reserve(np.where(self._owns[:-1], room, 0))

    def remove(self, ids: np.ndarray) -> int:
        return self.index.remove(ids)

    def list_sizes(self) -> np.ndarray:
        """Points per list of the whole clustering (zero for the lists of other shards)."""
        return self.index.list_sizes()

    def search(
        self,
        queries: np.ndarray,
        k: int,
        probes: np.ndarray,
        allowed: np.ndarray | None = None,
        rerank: int | None = None,
        exact: bool = False,
    ) -> ShardHits:
        """Top-``k`` of raw ``queries`` in the probed lists that are ours.

        ``probes`` (n, w) holds the coordinator's lists for the whole clustering (-1
        padded); ``allowed`` is a filter's little-endian bitmap over ids (``AllowedIds.bits``).
        Code lists re-rank their best ``rerank`` candidates (None: the kind's default);
        ``exact`` (the coordinator probes every list) re-scores every point held here.
        """
        probes = np.asarray(probes, dtype=np.int64)
        mine = np.where(self._owns[probes], probes, -1)
        selector = None
        if allowed is not None:
            bits = np.ascontiguousarray(allowed, dtype=np.uint8)
            selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
        if exact:  # the lists of other shards are empty here: every list is ours
            result = self.index.search(queries, k, exact=True, selector=selector)
        else:
            result = self.index.search(queries, k, lists=mine, selector=selector, rerank=rerank)
        n = len(probes)
        return ShardHits(
            result.scores, result.ids, round(result.scanned * n), round(result.candidates * n)
        )
