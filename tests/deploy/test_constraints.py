"""constraints.txt pins every package the project asks for, at a release it allows, and
every install of the project (make, the image) goes through it."""

from __future__ import annotations

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.files import PYPROJECT, ROOT, dockerfile

# What `make setup` installs: the project with these extras (the bench extra is installed
# by hand, and pins its releases in pyproject.toml).
INSTALLED_EXTRAS = ("dev", "cluster")


def _pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pairs = [line.split("==") for line in lines if line and not line.startswith("#")]
    assert all(len(pair) == 2 for pair in pairs), "one name==version per line"
    return {canonicalize_name(name): version for name, version in pairs}


def test_every_dependency_is_pinned_at_a_release_the_project_allows() -> None:
    pins = _pins()
    project = PYPROJECT["project"]
    wanted = list(project["dependencies"])
    for extra in INSTALLED_EXTRAS:
        wanted += project["optional-dependencies"][extra]
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (text, pins[name])


def _recipes() -> dict[str, list[str]]:
    """The Makefile's recipe lines by target."""
    recipes: dict[str, list[str]] = {}
    target = ""
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t"):
            recipes.setdefault(target, []).append(line.strip())
        elif ":" in line and not line.startswith(("#", " ")) and "=" not in line.split(":")[0]:
            target = line.split(":")[0]
    return recipes


def test_every_install_of_the_project_takes_the_constraints() -> None:
    installs = {
        target: line
        for target, lines in _recipes().items()
        for line in lines
        if "pip install" in line and " -e " in line
    }
    # `make constraints` alone installs without them: it rewrites them.
    assert installs.pop("constraints") and installs
    assert all("-c constraints.txt" in line for line in installs.values()), installs
    copied = [i.args.split()[:-1] for i in dockerfile() if i.keyword == "COPY"]
    assert any("constraints.txt" in sources for sources in copied)  # the image installs it
