"""``GET /``: the status page, rendered by a real headless Chromium (Debian's package).

``make setup`` installs Chromium when it runs as root on a machine without it; elsewhere
install ``chromium`` yourself. The test fails (never skips) without it.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.servers import Server

# Flags for a sandboxed CI machine: root (no sandbox), no GPU, and no background
# connections to the outside, which this network refuses.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: run `make setup` as root or install 'chromium'"
    return found


def dump_dom(url: str, profile: Path) -> str:
    """The DOM after Chromium loaded and laid out the page, serialised."""
    out = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "data")
    try:
        yield s.start()
    finally:
        s.stop()


def test_status_page_renders_collections_and_plots(server: Server, tmp_path: Path) -> None:
    for name, dim in (("docs", 2), ("images", 3)):
        r = httpx.post(server.url + "/collections", json={"name": name, "dim": dim}, timeout=30)
        assert r.status_code == 201
    points = [{"id": "a1", "vector": [0.1, 0.2]}, {"id": "a2", "vector": [0.3, 0.4]}]
    r = httpx.post(
        server.url + "/index", json={"collection": "docs", "points": points}, timeout=30
    )
    assert r.status_code == 200, r.text

    dom = dump_dom(server.url + "/", tmp_path / "chromium")
    assert "<svg" in dom and "vecroute" in dom
    body = dom[dom.index("<table") : dom.index("</table>") + len("</table>")]
    rows = ET.fromstring(body).findall("./tbody/tr")
    cells = {row[0].text: [td.text for td in row] for row in rows}
    assert set(cells) == {"docs", "images"}
    assert cells["docs"][1:3] == ["flat", "2"]  # state, points
    assert cells["images"][1:3] == ["flat", "0"]
    for name in ("docs", "images"):
        assert f'id="report-{name}"' in dom
        assert f"{name}: held-out routing quality vs nprobe" in dom
