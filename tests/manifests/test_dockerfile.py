"""The Dockerfile builds one slim, non-root image whose commands are the ones the chart runs.

No container engine runs on these machines, so the image is not built here; these checks read
the Dockerfile's instructions instead.
"""

from __future__ import annotations

import re
import tomllib

from tests.manifests import chart

DOCKERFILE = chart.REPO / "Dockerfile"


def _stages() -> list[list[tuple[str, str]]]:
    """Instructions (keyword, arguments) per build stage; continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword.upper(), args.strip()))
    return stages


def test_multi_stage_with_a_shell_free_runtime() -> None:
    """A build stage, then a runtime stage that only copies the virtualenv: no RUN there, so
    the runtime image needs no shell."""
    stages = _stages()
    assert len(stages) >= 2
    runtime = stages[-1]
    assert not [args for kw, args in runtime if kw == "RUN"]
    copies = [args for kw, args in runtime if kw == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    assert "distroless" in DOCKERFILE.read_text()


def test_runs_as_a_numeric_non_root_user() -> None:
    """USER is numeric (Kubernetes can only verify runAsNonRoot for a numeric UID), not 0, and
    the same UID the chart's securityContext sets."""
    users = [args for kw, args in _stages()[-1] if kw == "USER"]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert not gid or (gid.isdigit() and int(gid) > 0)
    for _, spec in chart.pod_specs(chart.render()):
        assert spec["securityContext"]["runAsUser"] == int(uid)


def test_chart_commands_are_the_image_entrypoints() -> None:
    """Each Deployment's command is a console script of pyproject.toml inside /opt/venv; the
    helm test Pod runs the virtualenv's Python (the image has no shell)."""
    scripts = tomllib.loads((chart.REPO / "pyproject.toml").read_text())["project"]["scripts"]
    objects = chart.render()
    commands = {
        c["name"]: c["command"]
        for _, spec in chart.pod_specs(o for o in objects if not chart.is_hook(o))
        for c in spec["containers"]
    }
    (test_pod,) = chart.hooks(objects)
    assert test_pod["spec"]["containers"][0]["command"][:2] == ["/opt/venv/bin/python", "-c"]
    assert commands == {
        "webhook": ["/opt/venv/bin/agent-bootstrap-webhook"],
        "approver": ["/opt/venv/bin/agent-bootstrap-approver"],
    }
    for (command,) in commands.values():
        assert command.removeprefix("/opt/venv/bin/") in scripts
    entrypoint = [args for kw, args in _stages()[-1] if kw == "ENTRYPOINT"]
    assert entrypoint == ['["/opt/venv/bin/agent-bootstrap-webhook"]']


def test_build_context_is_only_the_package() -> None:
    """.dockerignore admits pyproject.toml, README.md, LICENSE, the two lock files and the five
    packages (the agent proxy's too: the webhook injects it with this image), nothing else (no
    .venv, .git, tests, keys lying around in the work tree)."""
    lines = [
        line.strip()
        for line in (chart.REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "**"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert admitted == {
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "requirements.lock",
        "requirements-build.lock",
        "bootstrap_token",
        "webhook",
        "approver",
        "certs_tooling",
        "agent_proxy",
    }
    copied = {args.split()[0] for kw, args in _stages()[0] if kw == "COPY"}
    assert copied <= admitted


def test_agent_proxy_command_runs_from_the_image_path() -> None:
    """The sidecar the webhook injects (agents.agentProxy: the chart's image by default) runs
    its command by name, with no path: it must be a console script of the project, installed
    in /opt/venv/bin, which is on the runtime image's PATH."""
    from webhook.sidecar import COMMAND

    scripts = tomllib.loads((chart.REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "/" not in COMMAND
    assert COMMAND in scripts
    env = " ".join(args for kw, args in _stages()[-1] if kw == "ENV")
    path = re.search(r"\bPATH=(\S+)", env)
    assert path is not None, "the runtime stage sets no PATH"
    assert path.group(1).split(":")[0] == "/opt/venv/bin"
