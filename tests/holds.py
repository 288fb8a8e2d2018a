"""Holding an IVF rebuild mid-way, so a test can act while a reclustering is in progress."""

from __future__ import annotations

import threading

import pytest

from app.engine import lists as lists_module


def hold_ivf_builds(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """(building, release): every bulk fill of a new IVF sets ``building``, then waits for
    ``release`` before it starts, i.e. after the lists were copied, before the swap."""
    building, release = threading.Event(), threading.Event()
    real_fill = lists_module.fill

    def held_fill(*args: object) -> None:
        building.set()
        release.wait()
        real_fill(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(lists_module, "fill", held_fill)
    return building, release
