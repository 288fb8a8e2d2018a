"""The allowed-ids cache: fresh entries only, bounded by bytes, least recently used go first."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.allowed import AllowedCache, AllowedIds


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


def test_entries_of_an_older_generation_are_never_returned() -> None:
    cache = AllowedCache(1 << 20)
    a = allowed(4)
    cache.put("f", 1, a)
    assert cache.get("f", 1) is a
    assert cache.get("f", 2) is None
    cache.put("g", 2, allowed(4))
    assert cache.get("f", 1) is None and len(cache) == 1  # a newer state dropped the old
    cache.put("f", 1, a)  # evaluated before the write that made generation 2
    assert cache.get("f", 2) is None and len(cache) == 1


def test_least_recently_used_go_past_the_byte_budget() -> None:
    cache = AllowedCache(300)
    for key in "abc":
        cache.put(key, 0, allowed(100))
    assert cache.get("a", 0) is not None  # now b is the least recently used
    cache.put("d", 0, allowed(100))
    assert [cache.get(k, 0) is not None for k in "abcd"] == [True, False, True, True]
    assert cache.nbytes == 300
    cache.put("huge", 0, allowed(400))
    assert cache.get("huge", 0) is None and cache.nbytes == 300


def test_a_zero_budget_caches_nothing() -> None:
    cache = AllowedCache(0)
    cache.put("f", 0, allowed(1))
    assert cache.get("f", 0) is None and len(cache) == 0
    with pytest.raises(ValueError):
        AllowedCache(-1)
