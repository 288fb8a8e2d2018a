"""The router report's SVG: well-formed, one line per measured curve, a note when empty."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from app.api.plot import report_svg

NS = "{http://www.w3.org/2000/svg}"


def _report(**extra: object) -> dict:
    base = {
        "collection": "docs",
        "clustering_version": 1,
        "active_router_version": None,
        "evaluation": None,
        "nprobe": [],
        "centroid": None,
        "learned": None,
    }
    return base | extra


def test_empty_report_says_nothing_was_measured() -> None:
    root = ET.fromstring(report_svg(_report()))
    assert root.tag == f"{NS}svg"
    assert not root.findall(f"{NS}polyline")
    assert any("no held-out evaluation yet" in (t.text or "") for t in root.iter(f"{NS}text"))


def test_each_curve_is_a_line_inside_the_plot() -> None:
    curve = {"top1_accuracy": [0.2, 0.5, 1.0], "recall": [0.1, 0.4, 0.9]}
    report = _report(
        evaluation={"k": 10},
        nprobe=[1, 2, 4],
        centroid={"top1_accuracy": None, "recall": [0.1, 0.3, 0.8]},
        learned=curve,
    )
    root = ET.fromstring(report_svg(report))
    lines = root.findall(f"{NS}polyline")
    assert len(lines) == 3  # centroid top-1 was not measured
    height = float(root.get("height", 0))
    for line in lines:
        coords = [tuple(map(float, p.split(","))) for p in line.get("points", "").split()]
        assert len(coords) == 3 and all(0 <= y <= height for _, y in coords)
    labels = {t.text for t in root.iter(f"{NS}text")}
    assert {"learned recall@10", "learned top-1", "centroid recall@10"} <= labels
