"""The web console at ``/``, clicked through in a real browser against a real server.

PyPI's ``playwright`` drives Debian's Chromium (``make setup`` installs it at
/usr/bin/chromium; the test fails, never skips, without it), never a browser of its own.
The server requires an API key, so the page must ask for it once. Every wait is on what
the page shows (a row, a status text), with Playwright's timeouts only as safety nets.
A screenshot of each view is saved to a temporary folder whose path the test prints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.api.progress import wait_logged
from tests.api.servers import Server

CHROMIUM = "/usr/bin/chromium"
# Root on a CI machine (no sandbox), no GPU, no background connections to the outside.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
KEY = "console-test-key"
READ_KEY = "console-read-key"
DIM = 8
N_POINTS = 300
N_QUERIES = 250  # enough for a build to measure centroid recall (worker/build.py)
JOB_TIMEOUT_MS = 60_000


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """No automatic policy: the only jobs are those the test starts from the console."""
    s = Server(
        database_url,
        tmp_path / "data",
        VECROUTE_API_KEY=KEY,
        VECROUTE_READ_API_KEY=READ_KEY,
        VECROUTE_AUTO_POLICY="false",
        VECROUTE_TRAIN_MIN_QUERIES=str(N_QUERIES),
        VECROUTE_WORKER_POLL_S="0.05",
    )
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture
def page(server: Server) -> Iterator[Page]:
    assert Path(CHROMIUM).exists(), "Chromium is missing: run `make setup` as root"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        yield context.new_page()
        browser.close()


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("console-screenshots")
    print(f"console screenshots: {folder}")
    return folder


def index_points(server: Server, collection: str) -> None:
    """The points go in through the API, as a client would send them."""
    vectors = np.random.default_rng(0).standard_normal((N_POINTS, DIM)).round(4)
    points = [
        {"id": f"p{i:03d}", "vector": v.tolist(), "payload": {"n": i, "lang": ("en", "de")[i % 2]}}
        for i, v in enumerate(vectors)
    ]
    r = httpx.post(
        server.url + "/index",
        json={"collection": collection, "points": points},
        headers=server.headers,
    )
    assert r.status_code == 200, r.text


def log_queries(server: Server, collection: str) -> None:
    """Searches through the API, then wait until the store holds them (the build reads them)."""
    queries = np.random.default_rng(1).standard_normal((N_QUERIES, DIM)).round(4).tolist()
    body = {"collection": collection, "vectors": queries, "k": 10}
    r = httpx.post(server.url + "/search/batch", json=body, headers=server.headers)
    assert r.status_code == 200, r.text
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as client:
        wait_logged(client, N_QUERIES, collection)


def test_console_click_through(server: Server, page: Page, shots: Path) -> None:
    page.goto(server.url + "/")

    # The key, asked for once and kept for the tab: a read-only one first, which cannot write.
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("input").fill(READ_KEY)
    dialog.get_by_role("button", name="Use this key").click()
    expect(page.locator("#server-status")).to_contain_text("ready")
    expect(page.locator(".empty")).to_contain_text("No collections yet")
    form = page.locator("#create-collection")
    form.locator("[name=name]").fill("docs")
    form.get_by_role("button", name="Create").click()
    expect(form.locator(".problem")).to_contain_text("read-only")

    page.locator("#change-key").click()
    expect(dialog).to_be_visible()
    dialog.locator("input").fill(KEY)
    page.screenshot(path=shots / "0-api-key.png")
    dialog.get_by_role("button", name="Use this key").click()

    # Collections: create one from the form.
    form.locator("[name=name]").fill("docs")
    form.locator("[name=dim]").fill(str(DIM))
    form.locator("[name=metric]").select_option("cosine")  # so a point is its own best hit
    form.locator("[name=nlist]").fill("4")
    form.get_by_role("button", name="Create").click()
    row = page.locator("tr[data-collection=docs]")
    expect(row.locator(".state")).to_have_text("flat")

    # A bad one shows the server's problem+json inline.
    form.locator("[name=name]").fill("docs")
    form.get_by_role("button", name="Create").click()
    expect(form.locator(".problem")).to_contain_text("already exists")

    index_points(server, "docs")
    page.reload()  # the key survives a reload: it is kept for the tab
    expect(page.locator("#key-dialog")).to_be_hidden()
    expect(page.locator("tr[data-collection=docs] .count")).to_have_text(str(N_POINTS))
    page.screenshot(path=shots / "1-collections.png", full_page=True)

    # Points: page through, then look one up.
    row.get_by_role("link", name="docs").click()
    points = page.locator("#points tbody tr")
    expect(points).to_have_count(25)
    expect(points.first).to_have_attribute("data-id", "p000")
    page.locator("#next-page").click()
    expect(points.first).to_have_attribute("data-id", "p025")
    expect(page.locator("#page-number")).to_have_text("Page 2 of 12")
    page.locator("#point-id").fill("p042")
    page.get_by_role("button", name="Look up").click()
    detail = page.locator("#point-detail")
    expect(detail.locator("h3")).to_have_text("p042")
    expect(detail.locator("pre")).to_contain_text('"lang": "en"')
    page.screenshot(path=shots / "2-points.png", full_page=True)

    # Search playground: from that point, with a filter; errors inline, then hits.
    detail.get_by_role("button", name="Search similar").click()
    search = page.locator("#search-form")
    expect(search.locator("#query-id")).to_have_value("p042")
    search.locator("#filter").fill('{"must": [')
    search.get_by_role("button", name="Search").click()
    expect(page.locator("#filter-error")).to_contain_text("Not valid JSON")
    search.locator("#filter").fill(
        json.dumps({"must": [{"key": "lang", "match": {"valeu": "en"}}]})
    )
    search.get_by_role("button", name="Search").click()
    expect(page.locator("#filter-error .problem")).to_contain_text("Invalid request")
    search.locator("#filter").fill(
        json.dumps({"must": [{"key": "lang", "match": {"value": "en"}}]})
    )
    search.locator("[name=k]").fill("5")
    search.get_by_role("button", name="Search").click()
    hits = page.locator("#hits tbody tr")
    expect(hits).to_have_count(5)
    expect(hits.first.locator("td").nth(1)).to_have_text("p042")  # itself, exactly
    expect(page.locator("#filter-error")).to_be_empty()
    expect(page.locator("[data-fact=plan]")).to_have_text("exact")
    expect(page.locator("[data-fact=matches]")).to_have_text(str(N_POINTS // 2))
    page.screenshot(path=shots / "3-search.png", full_page=True)
    search.get_by_label("by vector").check()
    search.locator("#query-vector").fill(", ".join(["1"] + ["0"] * (DIM - 1)))
    search.locator("[name=routing]").select_option("exact")
    search.get_by_role("button", name="Search").click()
    expect(page.locator("[data-fact=routing]")).to_have_text("exact")
    expect(hits).to_have_count(5)
    expect(hits.first.locator(".payload")).to_contain_text('"lang":"en"')

    # Jobs: a build started from the collections list, watched until it succeeds.
    log_queries(server, "docs")
    page.locator("#tabs").get_by_role("link", name="Collections").click()
    page.locator("tr[data-collection=docs]").get_by_role("button", name="Build").click()
    build = page.locator("tr[data-kind=build]")
    expect(build.locator(".job-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    expect(build.locator(".pct")).to_have_text("100%")
    build.get_by_role("button", name="Details").click()
    expect(page.locator("tr.job-detail")).to_contain_text("nlist")

    # A router trained on the logged queries: its held-out comparison with centroid routing.
    page.locator("#train-router").get_by_role("button", name="Train").click()
    train = page.locator("tr[data-kind=train-router]")
    expect(train.locator(".job-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    train.get_by_role("button", name="Details").click()
    heldout = page.locator(".heldout")
    expect(heldout).to_contain_text("router v1 (linear, top1)")
    expect(heldout.locator("tbody tr").first).to_be_visible()
    page.screenshot(path=shots / "4-jobs.png", full_page=True)

    # Router report: the plot (an image of the service's SVG) and the state it reports.
    page.locator("#tabs").get_by_role("link", name="Router report").click()
    plot = page.locator("#report-plot")
    expect(plot).to_be_visible()
    assert plot.evaluate("img => img.complete && img.naturalWidth") > 0
    expect(page.locator("#report-evaluation")).to_contain_text("router v1 (linear)")
    expect(page.locator("#report-curves tbody tr").first).to_be_visible()
    expect(page.locator("#recall-table tbody tr").first).to_be_visible()
    expect(page.locator("#calibration")).to_contain_text("not calibrated")
    page.screenshot(path=shots / "5-report.png", full_page=True)

    page.locator("#tabs").get_by_role("link", name="Collections").click()
    expect(page.locator("tr[data-collection=docs] .state")).to_have_text("ivf")
    expect(page.locator("tr[data-collection=docs] .decision")).to_contain_text("v1")
    page.locator("tr[data-collection=docs]").get_by_role("button", name="Delete").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_contain_text("Delete docs?")
    page.screenshot(path=shots / "6-delete.png")
    confirm.get_by_role("button", name="Delete").click()
    expect(page.locator("tr[data-collection=docs]")).to_have_count(0)

    # A server that stops answering is said so plainly.
    server.stop()
    expect(page.locator("#banner")).to_contain_text("does not answer", timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#server-status")).to_have_text("not ready")
    page.screenshot(path=shots / "7-not-ready.png")
