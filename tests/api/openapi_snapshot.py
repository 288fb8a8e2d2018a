"""The committed OpenAPI snapshot (``tests/api/openapi.json``): API changes are deliberate.

``make openapi`` (``python -m tests.api.openapi_snapshot``) writes the app's document there;
``test_openapi.py`` fails with a diff whenever the app's document and the snapshot differ.
Keys sorted and indented, so a change reads as a small diff in review.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from app.main import create_app
from app.settings import Settings

SNAPSHOT = Path(__file__).with_name("openapi.json")
REGENERATE = "make openapi"


def render() -> str:
    """The document of an app that is never started (it is built from the routes alone)."""
    app = create_app(Settings(_env_file=None, database_url="sqlite://", embedded_worker=False))
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def mismatch(committed: str, live: str) -> str | None:
    """None if they agree; else what changed, as a unified diff, and how to accept it."""
    if committed == live:
        return None
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            live.splitlines(keepends=True),
            fromfile=f"{SNAPSHOT.name} (committed)",
            tofile=f"{SNAPSHOT.name} (the app's)",
        )
    )
    return (
        "The API's OpenAPI document differs from the committed snapshot. If the change is "
        f"deliberate, run `{REGENERATE}` and commit {SNAPSHOT.name}.\n{diff}"
    )


def main() -> None:
    SNAPSHOT.write_text(render())
    print(f"wrote {SNAPSHOT}")


if __name__ == "__main__":
    main()
