"""The Dockerfile, read as text (no Docker engine here): it installs the dependencies from the
lock with ``--require-hashes`` and ``--no-deps``, nothing else unpinned, then the project's own
wheel with ``--no-deps``; the build context lets in what it copies; the final image carries the
OCI labels from build arguments.
"""

from __future__ import annotations

import re

from tests.release.project import (
    BUILD_LOCK,
    LOCK,
    PROJECT,
    REPO,
    Instruction,
    dockerfile_instructions,
)

INSTRUCTIONS = dockerfile_instructions((REPO / "Dockerfile").read_text(encoding="utf-8"))
FINAL_STAGE = max(i.stage for i in INSTRUCTIONS)
PIP = re.compile(r"/opt/\w+/bin/pip (install|wheel) ")
#: Where the build stage puts the project's wheel (a path inside the image, not on this machine).
OWN_WHEEL = "/tmp/wheels/*.whl"  # noqa: S108


def _pip_commands(instructions: list[Instruction]) -> list[str]:
    """Every ``pip install``/``pip wheel`` command of the RUN instructions (split on ``&&``)."""
    commands: list[str] = []
    for instruction in instructions:
        if instruction.keyword == "RUN":
            commands += [c.strip() for c in instruction.arguments.split("&&") if PIP.search(c)]
    return commands


def test_the_reader_sees_the_stages() -> None:
    keywords = [i.keyword for i in INSTRUCTIONS]
    assert keywords.count("FROM") == 2
    assert FINAL_STAGE == 2


def test_dependencies_come_from_the_lock_with_hashes() -> None:
    commands = _pip_commands(INSTRUCTIONS)
    from_lock = [c for c in commands if f"-r {LOCK.name}" in c]
    assert len(from_lock) == 1, commands
    for flag in ("--require-hashes", "--no-deps", "--only-binary :all:"):
        assert flag in from_lock[0]


def test_every_pip_install_is_pinned() -> None:
    """Each ``pip install`` takes a lock file with hashes, or the project's own wheel without
    its dependencies; no ``pip install --upgrade pip``, no requirement resolved at build time."""
    installs = [c for c in _pip_commands(INSTRUCTIONS) if " install " in c]
    assert installs
    for command in installs:
        locked = "--require-hashes" in command and re.search(
            rf"-r ({re.escape(LOCK.name)}|{re.escape(BUILD_LOCK.name)})$", command
        )
        own_wheel = "--no-deps" in command and command.endswith(OWN_WHEEL)
        assert locked or own_wheel, f"unpinned install: {command}"


def test_the_project_wheel_is_built_with_the_pinned_tools_and_installed_without_deps() -> None:
    commands = _pip_commands(INSTRUCTIONS)
    build_tools = [c for c in commands if f"-r {BUILD_LOCK.name}" in c]
    assert len(build_tools) == 1
    assert "--require-hashes" in build_tools[0]
    wheel = [c for c in commands if " wheel " in c]
    assert len(wheel) == 1
    # Build isolation would fetch the newest setuptools instead of the pinned one.
    assert "--no-build-isolation" in wheel[0]
    assert "--no-deps" in wheel[0]
    runs = " && ".join(i.arguments for i in INSTRUCTIONS if i.keyword == "RUN")
    assert runs.index(f"-r {LOCK.name}") < runs.index(OWN_WHEEL)
    assert "/opt/venv/bin/pip check" in runs


def test_the_build_fails_when_version_is_not_pyprojects() -> None:
    runs = " ".join(i.arguments for i in INSTRUCTIONS if i.keyword == "RUN")
    assert 'test "$(/opt/venv/bin/agent-bootstrap-webhook --version)" = ' in runs
    assert '"agent-bootstrap-webhook ${VERSION}"' in runs


def test_the_build_context_lets_in_what_is_copied() -> None:
    """.dockerignore excludes everything but what it names: each COPY source must be named."""
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    sources: list[str] = []
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "COPY" and "--from=" not in instruction.arguments:
            sources += instruction.arguments.split()[:-1]
    assert {LOCK.name, BUILD_LOCK.name, "LICENSE"} <= set(sources)
    missing = set(sources) - allowed
    assert not missing, f".dockerignore keeps out {sorted(missing)}"


def _labels() -> dict[str, str]:
    labels: dict[str, str] = {}
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "LABEL" and instruction.stage == FINAL_STAGE:
            labels.update(re.findall(r'(\S+?)="([^"]*)"', instruction.arguments))
    return labels


def test_the_image_carries_the_oci_labels_from_build_arguments() -> None:
    labels = _labels()
    prefix = "org.opencontainers.image."
    assert labels[prefix + "version"] == "${VERSION}"
    assert labels[prefix + "revision"] == "${REVISION}"
    assert labels[prefix + "source"] == "${SOURCE_URL}"
    assert labels[prefix + "licenses"] == PROJECT["license"]
    # An ARG is seen in a stage only when that stage declares it (after its FROM).
    declared = {
        i.arguments.split("=", 1)[0]
        for i in INSTRUCTIONS
        if i.keyword == "ARG" and i.stage == FINAL_STAGE
    }
    assert {"VERSION", "REVISION", "SOURCE_URL"} <= declared


def test_make_image_passes_the_build_arguments() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^image:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "no `image` target in the Makefile"
    for argument in ("VERSION", "REVISION", "SOURCE_URL"):
        assert f"--build-arg {argument}=$({argument})" in recipe.group(1)
