"""``make sbom`` writes a CycloneDX JSON SBOM of the lock file: the project as the root component
at pyproject.toml's version, every pinned package as a component with its version, purl and
hashes; reproducible (no timestamp, no serial number), offline, and git-ignored.

Runs the Makefile's own recipe, with this interpreter's tools and a stamp that is already up to
date (so make installs nothing) and the output in a temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from tests.release.project import LOCK, PROJECT, REPO, VERSION, needed_on_the_image, parse_lock

MAKE = shutil.which("make")


@pytest.fixture(scope="module")
def sbom(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON ``make sbom`` writes (about 2 s)."""
    assert MAKE, "make is not installed"
    folder = tmp_path_factory.mktemp("sbom")
    stamp = folder / "installed"
    stamp.touch()  # newer than pyproject.toml: make does not reinstall the venv
    out = folder / "sbom.cdx.json"
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    done = subprocess.run(
        [
            MAKE,
            "--no-print-directory",
            "sbom",
            f"BIN={Path(sys.executable).parent}",
            f"TEST_STAMP={stamp}",
            f"SBOM={out}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pip install" not in done.stdout, "make reinstalled the venv"
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return document


def test_it_is_cyclonedx(sbom: dict[str, Any]) -> None:
    assert sbom["bomFormat"] == "CycloneDX"
    assert re.fullmatch(r"1\.\d+", sbom["specVersion"])


def test_the_root_component_is_the_project(sbom: dict[str, Any]) -> None:
    root = sbom["metadata"]["component"]
    assert root["name"] == PROJECT["name"]
    assert root["version"] == VERSION
    assert [entry["license"]["id"] for entry in root["licenses"]] == [PROJECT["license"]]


def test_every_pinned_package_is_a_component(sbom: dict[str, Any]) -> None:
    pins = parse_lock(LOCK.read_text(encoding="utf-8"))
    components = {canonicalize_name(c["name"]): c for c in sbom["components"]}
    assert set(components) == set(pins)
    for name, pin in pins.items():
        component = components[name]
        assert component["version"] == pin.version
        assert component["purl"] == f"pkg:pypi/{name}@{pin.version}"
        hashes = {
            h["content"]
            for reference in component.get("externalReferences", [])
            for h in reference.get("hashes", [])
        }
        assert hashes == {h.removeprefix("--hash=sha256:") for h in pin.hashes}


def test_the_runtime_dependencies_are_listed(sbom: dict[str, Any]) -> None:
    names = {canonicalize_name(c["name"]) for c in sbom["components"]}
    for requirement in needed_on_the_image(PROJECT["dependencies"]):
        assert canonicalize_name(requirement.name) in names, f"{requirement} is not in the SBOM"


def test_it_is_reproducible(sbom: dict[str, Any]) -> None:
    """No time stamp or random serial number: the same lock gives the same bytes."""
    assert "serialNumber" not in sbom
    assert "timestamp" not in sbom["metadata"]


def test_the_sbom_is_git_ignored() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    default = re.search(r"^SBOM\s*:=\s*(\S+)$", makefile, re.M)
    assert default, "no SBOM := in the Makefile"
    ignored = (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert f"/{default.group(1)}" in ignored
