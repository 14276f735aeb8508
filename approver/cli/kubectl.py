"""``kubectl-agents``: the admin client as a kubectl plugin (``kubectl agents list``).

kubectl runs any ``kubectl-<name>`` executable on ``PATH`` as ``kubectl <name>``; this console
script takes the same subcommands and flags as ``agent-bootstrap-approver agents`` (and
``completion bash|zsh``), with the same exit codes (:mod:`approver.cli.commands`). It reads the
agent-bootstrap client config file, not the kubeconfig: the approver is reached over its own
HTTPS admin API with an admin token, not through the Kubernetes API server.
"""

from __future__ import annotations

import argparse
import sys

from approver.cli import commands
from approver.cli.completion import add_completion_parser, print_completion
from bootstrap_token.version import version_text

PROG = "kubectl-agents"


def build_parser() -> argparse.ArgumentParser:
    """The plugin's command line: the ``agents`` subcommands at the top, plus ``completion``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="agent-bootstrap's pending queue, through a running approver's admin API "
        "(HTTPS). Same commands as 'agent-bootstrap-approver agents'.",
        parents=[commands.connection_parent()],
        epilog=commands.EPILOG,
    )
    parser.add_argument("--version", action="version", version=version_text(PROG))
    commands.configure_agents(parser)
    subparsers = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    add_completion_parser(subparsers)
    subparsers.metavar = "{list,get,approve,reject,revoke,delete,bulk-approve,completion}"
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kubectl-agents``. Returns the exit code; usage errors exit 2 through
    argparse (SystemExit)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.agents_command == "completion":
        return print_completion(parser, args.shell)
    args.command = "agents"
    return commands.run(args, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
