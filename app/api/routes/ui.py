"""``GET /``: one server-rendered HTML page (no front-end build, no script) listing the
collections with their state, counts, versions and router report plot."""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from app.api.deps import ServiceDep
from app.api.plot import report_svg

router = APIRouter()

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: left; }
th { background: #f4f4f4; }
section { margin-bottom: 2em; }
"""
COLUMNS = ("collection", "state", "points", "dim", "metric", "nlist", "clustering", "router")


@router.get("/", include_in_schema=False)
def index_page(service: ServiceDep) -> HTMLResponse:
    infos = service.list_collections()
    rows = "".join(_row(info) for info in infos)
    plots = "".join(
        f'<section id="report-{escape(info["name"])}"><h2>{escape(info["name"])}</h2>'
        f"{report_svg(service.router_report(info['name']))}"
        "</section>"
        for info in infos
    )
    empty = "" if infos else "<p>No collections yet: <code>POST /collections</code>.</p>"
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>vecroute</title>"
        f"<style>{STYLE}</style></head><body><h1>vecroute</h1>{empty}"
        f"<table id='collections'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        f"{plots}<p><a href='/docs'>API docs</a> · <a href='/metrics'>metrics</a></p>"
        "</body></html>"
    )
    return HTMLResponse(body)


def _row(info: dict[str, Any]) -> str:
    index, router_info = info["index"], info["router"]
    clustering = "-" if index["clustering_version"] is None else f"v{index['clustering_version']}"
    router_cell = router_info["kind"] + (
        f" v{router_info['version']}" if router_info["version"] is not None else ""
    )
    cells = (
        info["name"],
        index["state"],
        info["count"],
        info["dim"],
        info["metric"],
        index["nlist"] if index["nlist"] is not None else "-",
        clustering,
        router_cell,
    )
    return "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>"
