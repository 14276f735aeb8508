"""What the release tests read: pyproject.toml, the lock files and the Dockerfile, as text.

Sources: ``pyproject.toml`` (``[project]``, ``[build-system]``), ``requirements.lock`` and
``requirements-build.lock`` (``make lock``: uv's ``pip compile --generate-hashes`` output) and
``Dockerfile`` at the repository root.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT: dict[str, Any] = PYPROJECT["project"]
#: pyproject.toml's ``version``: the one definition every other place must agree with.
VERSION: str = PROJECT["version"]
LOCK = REPO / "requirements.lock"
BUILD_LOCK = REPO / "requirements-build.lock"

#: The image's interpreter: Debian 12's CPython 3.11 on Linux (markers evaluated against it).
IMAGE_ENVIRONMENT = {
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}

_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    """One entry of a lock file: ``name==version`` and its ``--hash=sha256:...`` options."""

    name: NormalizedName
    version: str
    hashes: tuple[str, ...]
    line: str


class LockError(ValueError):
    """A lock-file entry that is not ``name==version`` with sha256 hashes (message: the entry)."""


def parse_lock(text: str) -> dict[NormalizedName, Pin]:
    """The pins of a hash-pinned requirements file, by normalised name.

    Comments and blank lines are skipped and ``\\``-continued lines joined. Every other logical
    line must be exactly one requirement ``name==version`` (no range, no wildcard, no URL, no
    extras, no pip option such as ``-e`` or ``--index-url``) followed by one or more
    ``--hash=sha256:<64 hex digits>``; anything else raises :class:`LockError`, as does a name
    pinned twice.
    """
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            logical.append(" ".join(pending.split()))
        pending = ""
    if pending.strip():
        logical.append(" ".join(pending.split()))
    pins: dict[NormalizedName, Pin] = {}
    for entry in logical:
        head, _, options = entry.partition(" --")
        hashes = tuple(("--" + options).split()) if options else ()
        if head.startswith("-") or not hashes or not all(_HASH.fullmatch(h) for h in hashes):
            raise LockError(f"not a requirement with sha256 hashes: {entry!r}")
        try:
            requirement = Requirement(head)
        except InvalidRequirement as exc:
            raise LockError(f"not a requirement: {entry!r}") from exc
        specifiers = list(requirement.specifier)
        if (
            requirement.url
            or requirement.extras
            or len(specifiers) != 1
            or specifiers[0].operator != "=="
            or "*" in specifiers[0].version
        ):
            raise LockError(f"not pinned to one exact version: {entry!r}")
        name = canonicalize_name(requirement.name)
        if name in pins:
            raise LockError(f"pinned twice: {requirement.name}")
        pins[name] = Pin(name, specifiers[0].version, hashes, entry)
    return pins


def needed_on_the_image(requirements: list[str]) -> list[Requirement]:
    """The requirements of ``requirements`` whose marker holds on the image's interpreter."""
    parsed = [Requirement(text) for text in requirements]
    return [r for r in parsed if r.marker is None or r.marker.evaluate(IMAGE_ENVIRONMENT)]


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case), its arguments (whitespace runs
    folded to one space) and its build stage: 0 before the first ``FROM``, then 1, 2, ..."""

    keyword: str
    arguments: str
    stage: int


def dockerfile_instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    stage = 0
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comment lines are dropped inside a continued instruction too
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, arguments = pending.partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        out.append(Instruction(keyword.upper(), " ".join(arguments.split()), stage))
    return out
