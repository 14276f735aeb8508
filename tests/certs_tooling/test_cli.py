"""The command line as a whole: every command has --help, usage errors exit 2."""

from __future__ import annotations

import pytest

from certs_tooling.cli import main
from tests.certs_tooling.certs import run_cli

COMMANDS = [
    (["init"], "--leaf-days"),
    (["renew-serving-cert"], "--component"),
    (["rotate-ca"], "--finish"),
    (["keys"], "add"),
    (["keys", "add"], "pending"),
    (["keys", "activate"], "KID"),
    (["keys", "retire"], "--max-token-ttl"),
    (["keys", "list"], "--out"),
    (["jwks"], "--out"),
    (["token"], "inspect"),
    (["token", "inspect"], "--jwks"),
    (["k8s-manifests"], "--ca-bundle-only"),
    (["apiserver-client"], "--kubeconfig-path"),
    (["check"], "--warn-days"),
]


@pytest.mark.parametrize(("command", "expected"), COMMANDS)
def test_every_command_has_help(
    command: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`COMMAND --help` exits 0, describes the command and hides the testing --now flag."""
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: certs-tooling {' '.join(command)}")
    assert expected in out
    if command != ["token", "inspect"]:  # there --now is a documented option
        assert "--now" not in out


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """The top-level help names each command and the exit codes."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("init", "renew-serving-cert", "rotate-ca", "keys", "jwks", "token", "check"):
        assert name in out
    assert "k8s-manifests" in out
    assert "apiserver-client" in out
    assert "Exit codes: 0 ok, 1 refused/failed/problem found, 2 usage." in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["no-such-command"],
        ["init"],
        ["init", "--out", "x", "--leaf-days", "0"],
        ["keys", "retire", "--out", "x"],
        ["token", "inspect", "t", "--jwks", "j", "--now", "soon"],
    ],
)
def test_usage_errors_return_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Missing or malformed arguments return 2 with a usage message on stderr."""
    assert main(argv) == 2
    assert "usage: certs-tooling" in capsys.readouterr().err


def test_usage_error_in_a_real_process() -> None:
    """A real process exits 2 on a usage error."""
    result = run_cli("renew-serving-cert")
    assert result.returncode == 2
    assert "the following arguments are required: --out" in result.stderr
