"""The allowed-ids cache: fresh entries only, bounded by bytes, least recently used go first."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.allowed import AllowedCache, AllowedIds
from app.engine.filters import parse_filter
from app.engine.payload_index import PayloadIndex


def allowed(n_bytes: int, first: int = 0) -> AllowedIds:
    mask = np.zeros(8 * n_bytes, dtype=bool)
    mask[first] = True
    return AllowedIds.from_mask(mask)


def test_bitmap_selector_and_count_follow_the_mask() -> None:
    mask = np.array([True, False, False, True, True, False, False, False, False, True])
    a = AllowedIds.from_mask(mask)
    assert a.count == 4 and len(a.bits) == 2
    assert [a.selector.is_member(i) for i in range(12)] == [*mask.tolist(), False, False]
    with pytest.raises(ValueError):
        AllowedIds.from_mask(mask.astype(np.int8))


def test_an_entry_serves_only_its_own_owner_and_generation() -> None:
    cache = AllowedCache(1 << 20)
    a = allowed(4)
    cache.put(1, "f", 1, a)
    assert cache.get(1, "f", 1) is a
    assert cache.get(1, "f", 2) is None and cache.get(2, "f", 1) is None
    newer = allowed(4, first=3)
    cache.put(1, "f", 2, newer)
    cache.put(1, "f", 1, a)  # evaluated before the write that made generation 2
    assert cache.get(1, "f", 2) is newer and cache.get(1, "f", 1) is None
    assert len(cache) == 1 and cache.nbytes == 4


def test_least_recently_used_go_past_the_byte_budget() -> None:
    cache = AllowedCache(300)
    for owner, key in ((1, "a"), (1, "b"), (2, "c")):
        cache.put(owner, key, 0, allowed(100))
    assert cache.get(1, "a", 0) is not None  # now b is the least recently used
    cache.put(2, "d", 0, allowed(100))
    present = [cache.get(o, k, 0) is not None for o, k in ((1, "a"), (1, "b"), (2, "c"), (2, "d"))]
    assert present == [True, False, True, True] and cache.nbytes == 300
    cache.put(3, "huge", 0, allowed(400))
    assert cache.get(3, "huge", 0) is None and cache.nbytes == 300


def test_a_zero_budget_caches_nothing() -> None:
    cache = AllowedCache(0)
    cache.put(1, "f", 0, allowed(1))
    assert cache.get(1, "f", 0) is None and len(cache) == 0
    with pytest.raises(ValueError):
        AllowedCache(-1)


def test_payload_indexes_sharing_a_cache_never_see_each_others_bitmaps() -> None:
    cache = AllowedCache(1 << 20)
    f = parse_filter({"must": [{"key": "lang", "match": {"value": "en"}}]})
    english = PayloadIndex.build({}, [(0, {"lang": "en"}), (1, {"lang": "en"})], cache)
    german = PayloadIndex.build({}, [(0, {"lang": "de"})], cache)
    assert (english.allowed(f).count, german.allowed(f).count) == (2, 0)
    assert len(cache) == 2 and english.allowed(f) is english.allowed(f)
