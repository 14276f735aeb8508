"""Every command line the guides show parses with the program's own parser (issue 17: the
StreamSpace guide called ``certs-tooling k8s-manifests --dir``, an option that does not exist).

A synopsis is read with the first alternative of each ``[...]`` group and of each ``a|b``. A
line with placeholders (``KID``, ``EPOCH``, ``$NS``) or elided arguments (``...``) that does not
parse as a whole call must still name an existing command and only options it has.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Callable

import pytest

from approver.__main__ import _parser as approver_parser
from approver.cli.kubectl import build_parser as kubectl_agents_parser
from certs_tooling.cli import build_parser as certs_tooling_parser
from tests.docs.markdown import Command, commands
from webhook.__main__ import _parser as webhook_parser

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "certs-tooling": certs_tooling_parser,
    "agent-bootstrap-approver": approver_parser,
    "agent-bootstrap-webhook": webhook_parser,
    "kubectl-agents": kubectl_agents_parser,
}
COMMANDS = commands(tuple(PARSERS))


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def _named_parts_exist(parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    """Problems of a partial call: the subcommands it walks exist, and every ``--option`` is one
    of the parser it reaches (or of one on the way: ``--config`` is the approver's everywhere).
    """
    problems = []
    known = _options(parser)
    current = parser
    for token in args:
        if token.startswith("--"):
            option = token.split("=", 1)[0]
            if option not in known:
                problems.append(f"unknown option {option}")
            continue
        children = _subcommands(current)
        if token in children:
            current = children[token]
            known |= _options(current)
        elif children and current is parser:
            problems.append(f"unknown command {token!r}")
    return problems


def test_the_guides_show_commands() -> None:
    """The extraction finds the commands (a broken reader must not pass silently)."""
    programs = {c.program for c in COMMANDS}
    assert programs == {"certs-tooling", "agent-bootstrap-approver", "kubectl-agents"}
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_command_parses(command: Command) -> None:
    parser = PARSERS[command.program]()
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(command.args)
    except SystemExit:
        if not command.partial:
            pytest.fail(f"{command.where}: `{command.text}` does not parse:\n{errors.getvalue()}")
        problems = _named_parts_exist(parser, command.args)
        assert not problems, f"{command.where}: `{command.text}`: {'; '.join(problems)}"


def test_an_unknown_option_is_caught() -> None:
    """The check itself: the guide's old `k8s-manifests --dir` fails, whole or elided."""
    parser = certs_tooling_parser()
    assert _named_parts_exist(parser, ["k8s-manifests", "--dir", "./pki"]) == [
        "unknown option --dir"
    ]
    assert _named_parts_exist(parser, ["k8s-manfests"]) == ["unknown command 'k8s-manfests'"]
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        parser.parse_args(["k8s-manifests", "--dir", "./pki", "--namespace", "ns"])
