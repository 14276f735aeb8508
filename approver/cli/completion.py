"""``completion bash|zsh|tcsh``: a shell completion script generated from the argparse parser
by shtab (every subcommand, flag and choice).

Install (bash)::

    agent-bootstrap-approver completion bash > /etc/bash_completion.d/agent-bootstrap-approver

zsh: write ``completion zsh`` as ``_agent-bootstrap-approver`` into a directory of ``$fpath``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import shtab

SHELLS = ("bash", "zsh", "tcsh")


def add_completion_parser(commands: Any) -> None:
    """Register ``completion`` on ``commands`` (``parser.add_subparsers()``)."""
    parser = commands.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh, tcsh)",
        description="Print a completion script for SHELL on standard output.",
    )
    parser.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or tcsh")


def print_completion(parser: argparse.ArgumentParser, shell: str, out: TextIO | None = None) -> int:
    """Write ``parser``'s completion script for ``shell``. Returns 0."""
    print(shtab.complete(parser, shell=shell), file=out or sys.stdout)
    return 0
