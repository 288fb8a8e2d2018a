"""The router report drawn as a small hand-written SVG (no plotting library in the API).

nprobe values are spaced evenly (they are 1, 2, 4, ... so this is a log2 axis); y is a
share from 0 to 1. Recall@k is drawn solid, top-1 accuracy dashed; centroid blue,
learned orange.
"""

from __future__ import annotations

from html import escape
from typing import Any

WIDTH, HEIGHT = 600, 320
LEFT, RIGHT, TOP, BOTTOM = 48, 170, 34, 42
COLORS = {"centroid": "#1f77b4", "learned": "#ff7f0e"}
DASH = {"recall": "", "top1_accuracy": "6 4"}
LABEL = {"recall": "recall@{k}", "top1_accuracy": "top-1"}


def report_svg(report: dict[str, Any]) -> str:
    nprobes: list[int] = report["nprobe"]
    k = report["evaluation"]["k"] if report["evaluation"] else 10
    title = f"{report['collection']}: held-out routing quality vs nprobe"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        'font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="18" font-size="13">{escape(title)}</text>',
    ]
    series = [
        (routing, metric, values)
        for routing in ("centroid", "learned")
        if report.get(routing)
        for metric in ("recall", "top1_accuracy")
        if (values := report[routing][metric]) is not None
    ]
    if not nprobes or not series:
        parts.append(
            f'<text x="{LEFT}" y="{HEIGHT // 2}">no held-out evaluation yet: the worker '
            "measures one when it builds with logged queries or trains a router</text>"
        )
        parts.append("</svg>")
        return "\n".join(parts)
    parts += _axes(nprobes)
    for i, (routing, metric, values) in enumerate(series):
        parts.append(_line(nprobes, values, COLORS[routing], DASH[metric]))
        parts += _legend(i, f"{routing} {LABEL[metric].format(k=k)}", COLORS[routing], DASH[metric])
    parts.append("</svg>")
    return "\n".join(parts)


def _x(i: int, n: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + (span / 2 if n == 1 else span * i / (n - 1))


def _y(value: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - min(max(value, 0.0), 1.0))


def _axes(nprobes: list[int]) -> list[str]:
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    out = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _y(tick)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    out.append(f'<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>')
    for i, p in enumerate(nprobes):
        x = _x(i, len(nprobes))
        out.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{p}</text>')
    mid = (LEFT + right) / 2
    out.append(f'<text x="{mid:.1f}" y="{HEIGHT - 8}" text-anchor="middle">nprobe</text>')
    return out


def _line(nprobes: list[int], values: list[float], color: str, dash: str) -> str:
    n = len(nprobes)
    points = " ".join(f"{_x(i, n):.1f},{_y(v):.1f}" for i, v in enumerate(values))
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"{dashed}/>'


def _legend(i: int, label: str, color: str, dash: str) -> list[str]:
    x, y = WIDTH - RIGHT + 14, TOP + 6 + 18 * i
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    return [
        f'<line x1="{x}" y1="{y}" x2="{x + 24}" y2="{y}" stroke="{color}" '
        f'stroke-width="2"{dashed}/>',
        f'<text x="{x + 30}" y="{y + 4}">{escape(label)}</text>',
    ]
