"""Store URLs as other processes on this machine (shard replicas) must read them."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.store.db import shareable_url


def test_a_relative_sqlite_file_is_shared_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert shareable_url("sqlite:///data/vecroute.db") == f"sqlite:///{tmp_path}/data/vecroute.db"
    assert shareable_url(f"sqlite:///{tmp_path}/x.db") == f"sqlite:///{tmp_path}/x.db"
    assert shareable_url("sqlite://") == "sqlite://"  # in memory: nothing to share
    url = "postgresql+psycopg://vr:secret@127.0.0.1:5432/vecroute"
    assert shareable_url(url) == url
