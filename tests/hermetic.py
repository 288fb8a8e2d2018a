"""The suite runs as on a clean machine: no app setting comes from the caller's environment
or from a ``.env``.

``Settings`` reads ``VECROUTE_<field>`` variables and ``./.env``. A developer who exported
``VECROUTE_API_KEY``, or keeps a ``.env`` beside the checkout for ``make serve``, must still
get a green suite, and every test must run on the settings it states. So the test process
drops those variables and works from an empty directory (``tests/conftest.py``), and server
processes start from the same clean environment in their own data directory
(``tests/api/servers.py``). The suite's own knobs (``VECROUTE_TEST_PG_URL``, …) are not
settings and stay.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from app.settings import Settings

_PREFIX = str(Settings.model_config.get("env_prefix", "")).upper()


def is_app_setting(variable: str) -> bool:
    """Whether ``Settings`` would read this environment variable (names are case-blind)."""
    name = variable.upper()
    return name.startswith(_PREFIX) and name[len(_PREFIX) :].lower() in Settings.model_fields


def without_app_settings(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not is_app_setting(k)}


def isolate(patch: pytest.MonkeyPatch, workdir: Path) -> None:
    """Drop the app's settings from ``os.environ`` and work from ``workdir`` (no ``.env``)."""
    for variable in [v for v in os.environ if is_app_setting(v)]:
        patch.delenv(variable)
    patch.chdir(workdir)
