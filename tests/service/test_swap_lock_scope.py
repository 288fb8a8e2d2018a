"""A new clustering is swapped in without holding the process's writes: while one
collection's vectors are re-assigned, writes to it and to every other collection go on, and
all of them are in the index afterwards."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from app.service.search import SearchOptions
from tests.holds import hold_ivf_builds
from tests.service.services import start_service
from worker.build import run_build

T = TypeVar("T")


def _points(prefix: str, n: int, seed: int) -> list[dict]:
    x = np.random.default_rng(seed).standard_normal((n, 8))
    return [{"id": f"{prefix}{i}", "vector": v.tolist()} for i, v in enumerate(x)]


def test_writes_to_any_collection_go_on_while_a_clustering_is_swapped_in(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = start_service(database_url, tmp_path)
    try:
        for name in ("a", "b"):
            service.create_collection(
                name=name, dim=8, metric="ip", nlist=4, algorithm="kmeans", default_nprobe=4
            )
            service.index_points(name, _points(name, 400, seed=ord(name)))
        # Held before publishing: the runtime's own catch-up loop may be the one to swap.
        building, release = hold_ivf_builds(monkeypatch)
        run_build(service.store, "a", {}, lambda _: None)  # published; the swap is catch-up's
        swap = threading.Thread(target=service.registry.catch_up, daemon=True)
        swap.start()
        building.wait()
        wrote = threading.Event()

        def write() -> None:
            service.index_points("b", _points("b-new", 10, seed=1))
            service.index_points("a", _points("a-new", 10, seed=2))
            service.delete_points("a", ["a0", "a1"])
            wrote.set()

        threading.Thread(target=write, daemon=True).start()
        try:
            # A safety net only: before the fix both writes waited for the whole swap.
            assert wrote.wait(60), "writes waited for another collection's swap"
        finally:
            release.set()
        swap.join()

        a = service.registry.get("a")
        assert a.clustering_version == 1 and a.index.count == 408
        assert service.registry.get("b").index.count == 410
        query = np.ones((1, 8), np.float32)
        exact = SearchOptions(k=408, nprobe=None, routing="exact", with_payload=False)
        ivf = SearchOptions(k=408, nprobe=4, routing="centroid", with_payload=False)
        hits = [
            {h["id"] for h in service.search("a", query, opts)["results"][0]}
            for opts in (exact, ivf)
        ]
        assert hits[0] == hits[1] and {"a-new0", "a-new9"} <= hits[0]
        assert not {"a0", "a1"} & hits[0]
    finally:
        service.stop()


def test_catch_up_returns_once_a_swap_another_thread_took_on_is_in(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The swap runs outside the apply lock, after the watermark moved: a second catch-up
    finds nothing left to apply, and still returns only with the new clustering served."""
    service = start_service(database_url, tmp_path)
    try:
        service.create_collection(
            name="a", dim=8, metric="ip", nlist=4, algorithm="kmeans", default_nprobe=4
        )
        service.index_points("a", _points("a", 400, seed=0))
        building, release = hold_ivf_builds(monkeypatch)
        # Released only once this thread's catch-up waits for the swap: one that does not
        # wait returns with the swap still held.
        monkeypatch.setattr(service.registry, "_swapping", _ReleasingOnWait(release))
        run_build(service.store, "a", {}, lambda _: None)
        swap = threading.Thread(target=service.registry.catch_up, daemon=True)
        swap.start()
        building.wait()  # the watermark is past the build; its swap is held
        service.registry.catch_up()
        assert service.registry.get("a").clustering_version == 1
        swap.join()
    finally:
        release.set()
        service.stop()


class _ReleasingOnWait(threading.Condition):
    """The registry's swap condition, setting ``release`` when the test's own thread starts
    to wait on it (the runtime's catch-up loop may wait on it too)."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self._release_on_wait = release
        self._test_thread = threading.current_thread()

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._test_thread:
            self._release_on_wait.set()
        return super().wait_for(predicate, timeout)
