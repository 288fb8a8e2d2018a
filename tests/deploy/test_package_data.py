"""The console's static files are package data, so a non-editable install serves them too."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_console_file_is_declared_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["app"]
    app = ROOT / "app"
    declared = {p for pattern in patterns for p in app.glob(pattern)}
    shipped = {p for p in (app / "console").rglob("*") if p.is_file()}
    assert (app / "console" / "index.html") in shipped
    assert shipped <= declared, sorted(str(p) for p in shipped - declared)
