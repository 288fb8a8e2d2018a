"""``GET /``: the web console, static files served by this process (no build step).

The page and its scripts hold no data: they call the public API from the browser with the
user's key, so they are served without one (app/api/auth.py lets ``/`` and ``/console/``
through) and the key prompt can appear.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console"
PREFIX = "/console"

router = APIRouter()


@router.get("/", include_in_schema=False)
def console_page() -> FileResponse:
    return FileResponse(CONSOLE_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def mount(app: FastAPI) -> None:
    """Serve the console's scripts and stylesheet under ``/console/``."""
    app.mount(PREFIX, StaticFiles(directory=CONSOLE_DIR), name="console")
