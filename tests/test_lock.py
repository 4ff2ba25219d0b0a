"""The lock (constraints.txt) pins every dependency the project declares, extras included."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[1]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(Requirement(name).name)] = Version(version.split(";")[0].strip())
    return pins


def test_every_declared_dependency_is_pinned_within_its_bounds() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    pins = _pins()
    for spec in declared:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in constraints.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{requirement.name}=={pins[name]} in constraints.txt is outside {requirement.specifier}: run `make lock`"
        )


def test_airflow_is_resolved_together_with_the_rest() -> None:
    pins = _pins()
    assert pins["apache-airflow"] >= Version("3.2")
    # the pins Airflow imposes, which later work must not have to fight
    assert pins["sqlalchemy"] >= Version("2.0.50")
    assert pins["structlog"] >= Version("25")
    assert "fastapi" in pins
