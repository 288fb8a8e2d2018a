"""Readers for the deployment files: Dockerfile instructions, compose ``${...}`` values,
and what the project offers that those files may name (commands, settings, routes)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

from app.cli import build_parser
from app.main import create_app
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_ENV = {f"VECROUTE_{name.upper()}" for name in Settings.model_fields}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON-array form of CMD / HEALTHCHECK CMD (the one without a shell)."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + len("CMD") :]
        value = json.loads(text.strip())
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value


def dockerfile(path: Path = ROOT / "Dockerfile") -> list[Instruction]:
    """Instructions in order, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    out = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return out


def env_pairs(args: str) -> dict[str, str]:
    """``ENV A=1 B=2`` (the key=value form)."""
    return dict(word.split("=", 1) for word in shlex.split(args))


_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${NAME}`` / ``${NAME:-default}`` with an empty environment by default."""
    env = env or {}
    return _VAR.sub(lambda m: env.get(m[1]) or (m[2] or ""), value)


def parse_command(argv: list[str]):  # type: ignore[no-untyped-def]
    """The argparse namespace the real CLI makes of ``argv`` (after the program name)."""
    assert argv[0] in PYPROJECT["project"]["scripts"], f"{argv[0]} is no project command"
    return build_parser().parse_args(argv[1:])


def documented_get_paths() -> set[str]:
    """Paths with a GET operation in the app's OpenAPI document."""
    app = create_app(Settings(database_url="sqlite://", embedded_worker=False))
    return {path for path, ops in app.openapi()["paths"].items() if "get" in ops}
