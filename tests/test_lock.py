"""The locks: what every install (make, CI, Docker) takes, and that they match pyproject.toml.

Docker cannot run here, so the Dockerfile's install step is checked by reading it.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def pins(lock: str) -> dict[str, tuple[str, str | None, int]]:
    """name -> (version, marker, number of hashes) for every package in a lock file."""
    found: dict[str, tuple[str, str | None, int]] = {}
    name = None
    for line in (ROOT / lock).read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match[1])
            found[name] = (match[2], match[3], 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            version, marker, hashes = found[name]
            found[name] = (version, marker, hashes + 1)
    return found


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("lock, extras", [("requirements.lock", []),
                                          ("requirements-dev.lock", ["test"])])
def test_each_lock_pins_every_requirement_within_its_range_with_hashes(lock, extras):
    locked = pins(lock)
    project = pyproject()
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for extra in extras:
        wanted += project["project"]["optional-dependencies"][extra]
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{lock} lacks {name}: run `make lock`"
        assert requirement.specifier.contains(locked[name][0], prereleases=True), \
            f"{lock}: {name}=={locked[name][0]} is outside {requirement.specifier}"
    assert len(locked) > len(wanted)  # transitive dependencies are pinned too
    assert all(hashes for _, _, hashes in locked.values()), "a pin without --hash"


def test_this_environment_is_exactly_the_dev_lock():
    """What `make test` runs with is what the lock says, package by package."""
    for name, (version, marker, _) in pins("requirements-dev.lock").items():
        if marker and not Marker(marker).evaluate():
            continue
        assert metadata.version(name) == version, f"{name}: installed != locked {version}"


def test_make_and_ci_install_from_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "--require-hashes --no-deps -r requirements/uv.lock" in recipe
    assert "pip sync --quiet --require-hashes" in recipe and "$(LOCK)" in recipe
    assert "--no-deps --no-build-isolation -e ." in recipe
    assert "LOCK := requirements-dev.lock" in makefile
    assert re.search(r"^lock:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_dockerfile_installs_exactly_the_lock():
    lines = [line.strip() for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines()]
    installs = [line for line in lines if "pip install" in line]
    assert installs == [
        "RUN pip install --require-hashes --no-deps -r requirements.lock",
        "RUN pip install --no-deps --no-build-isolation . && rm -rf /src",
    ]
    assert "COPY requirements.lock ./" in lines
    assert lines.index("COPY requirements.lock ./") < lines.index(installs[0])
