"""``vecroute import``: files into a collection through the service, as ``/index`` would."""

from __future__ import annotations

import gzip
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.store import counters
from app.store.collections import create_collection, get_collection
from app.store.db import Store
from app.store.migrate import upgrade
from app.store.points import get_point, iter_live_points

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def vecroute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Run]:
    """Runs ``vecroute <args>`` in this process (a child would re-import torch: seconds);
    returns (exit code, stdout, stderr). The CLI's logging set-up is undone afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setenv("VECROUTE_DATA_DIR", str(tmp_path / "data"))

    def run(db: str, *args: str) -> tuple[int, str, str]:
        monkeypatch.setenv("VECROUTE_DATABASE_URL", db)
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            print(exc.code, file=sys.stderr)
            code = 1
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run
    root.handlers[:], root.level = handlers, level


@pytest.fixture
def docs_store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store with an empty 3-d collection ``docs``."""
    s = Store(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(s)
    create_collection(s, name="docs", dim=3, metric="ip", nlist=None, algorithm="kmeans")
    yield s
    s.dispose()


def test_npy_with_ids_and_jsonl_with_payloads(
    docs_store: Store, tmp_path: Path, vecroute: Run
) -> None:
    vectors = np.arange(15, dtype=np.float32).reshape(5, 3)
    np.save(tmp_path / "v.npy", vectors)
    (tmp_path / "ids.txt").write_text("\n".join(f"n{i}" for i in range(5)) + "\n")
    db = docs_store.engine.url.render_as_string()
    code, out, err = vecroute(db, "import", "docs", str(tmp_path / "v.npy"),
                              "--ids", str(tmp_path / "ids.txt"), "--batch", "2")  # fmt: skip
    assert code == 0, err
    assert "imported 5 points into 'docs'" in out
    assert "import docs" in err and "5/5" in err  # the progress bar

    lines = [
        {"id": "n1", "vector": [9, 9, 9], "payload": {"lang": "en"}},
        {"id": 7, "vector": [1, 2, 3]},
    ]
    with gzip.open(tmp_path / "p.jsonl.gz", "wt") as f:
        f.write("\n".join(json.dumps(line) for line in lines) + "\n")
    code, out, err = vecroute(db, "import", "docs", str(tmp_path / "p.jsonl.gz"))
    assert code == 0, err

    with docs_store.read() as session:
        record = get_collection(session, "docs")
        assert record is not None
        rows = sum(len(ids) for ids, _ in iter_live_points(session, record.id, 3))
        assert rows == counters.live_points(session, record.id) == 6  # n1 replaced, 7 added
        n1 = get_point(session, record.id, "n1", 3)
        n4 = get_point(session, record.id, "n4", 3)
    assert n1 is not None and n1.payload == {"lang": "en"} and n1.vector.tolist() == [9, 9, 9]
    assert n4 is not None and n4.vector.tolist() == vectors[4].tolist()


def test_a_bad_batch_is_refused_with_the_index_message(
    docs_store: Store, tmp_path: Path, vecroute: Run
) -> None:
    np.save(tmp_path / "wide.npy", np.zeros((2, 4), dtype=np.float32))
    db = docs_store.engine.url.render_as_string()
    code, _, err = vecroute(db, "import", "docs", str(tmp_path / "wide.npy"))
    assert code == 1 and "expected dimension 3, got 4" in err
    code, _, err = vecroute(db, "import", "nope", str(tmp_path / "wide.npy"))
    assert code == 1 and "collection 'nope' does not exist" in err
