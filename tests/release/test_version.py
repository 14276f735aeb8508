"""One version, defined once (pyproject.toml), read at run time and printed by every command.

Also the release text around it: LICENSE is the Apache License 2.0 that pyproject.toml
declares, CHANGELOG.md has an entry for the version, and the places that must repeat the version
(the Dockerfile's default ``VERSION``, the chart's ``appVersion``, the kustomize base's image
tags) agree with it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bootstrap_token import version as version_module
from tests.release.project import PROJECT, REPO, VERSION, dockerfile_instructions

SCRIPTS: dict[str, str] = PROJECT["scripts"]
#: sha256 of the Apache License 2.0 as published (apache.org/licenses/LICENSE-2.0.txt, 11,358
#: bytes; the same file as Debian's /usr/share/common-licenses/Apache-2.0).
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_the_version_is_pyprojects() -> None:
    assert version_module.version() == VERSION
    assert importlib.metadata.version(version_module.DISTRIBUTION) == VERSION


def test_an_uninstalled_tree_says_its_version_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(version_module, "distribution_version", missing)
    assert version_module.version.__wrapped__() == version_module.UNKNOWN


def test_the_five_commands_are_the_scripts() -> None:
    """The services, the tooling, the admin client as a kubectl plugin (``kubectl-agents``:
    ``kubectl agents``) and the agent proxy sidecar."""
    assert set(SCRIPTS) == {
        "agent-bootstrap-webhook",
        "agent-bootstrap-approver",
        "certs-tooling",
        "kubectl-agents",
        "agent-bootstrap-agent-proxy",
    }


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_version_flag_prints_pyprojects_version(script: str) -> None:
    """The installed console script (pyproject's [project.scripts]) answers ``--version`` with
    ``<script> <version>`` and exit status 0."""
    executable = Path(sys.executable).parent / script
    assert executable.is_file(), f"{script} is not installed beside {sys.executable}"
    done = subprocess.run(
        [str(executable), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{script} {VERSION}\n"


def test_license_is_the_apache_license_2_0() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_bytes()
    assert hashlib.sha256(text).hexdigest() == APACHE_2_SHA256
    assert b"Apache License\n                           Version 2.0, January 2004" in text


def test_the_changelog_has_the_version_and_an_unreleased_section() -> None:
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.M)
    assert headings, "no '## [version] - date' headings"
    assert headings[0] == ("Unreleased", ""), "the first section is [Unreleased]"
    released = {name: date for name, date in headings[1:]}
    assert VERSION in released, f"CHANGELOG.md has no section for {VERSION}"
    assert released[VERSION], f"the {VERSION} section has no date"


def test_the_dockerfiles_default_version_is_pyprojects() -> None:
    instructions = dockerfile_instructions((REPO / "Dockerfile").read_text(encoding="utf-8"))
    defaults = [i.arguments for i in instructions if i.keyword == "ARG" and i.stage == 0]
    assert f"VERSION={VERSION}" in defaults


def test_the_chart_and_the_kustomize_base_name_the_version() -> None:
    chart = yaml.safe_load(
        (REPO / "manifests/helm/agent-bootstrap/Chart.yaml").read_text(encoding="utf-8")
    )
    assert chart["appVersion"] == VERSION
    tags = re.findall(
        r"^\s*image:\s*agent-bootstrap:(\S+)\s*$",
        "\n".join(
            p.read_text(encoding="utf-8")
            for p in sorted((REPO / "manifests/kustomize/base").glob("*.yaml"))
        ),
        re.M,
    )
    assert tags, "no agent-bootstrap image in the kustomize base"
    assert set(tags) == {VERSION}
