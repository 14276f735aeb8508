"""``agent-bootstrap-approver``: serve the approver, migrate its database, verify its audit chain;
and, as a client of a running approver, manage its agents.

Usage, on the approver's **database** (its settings: ``--config FILE``)::

    agent-bootstrap-approver [--config FILE] [serve]        # default: migrate, then serve
    agent-bootstrap-approver [--config FILE] migrate        # migrate and exit (an init container)
    agent-bootstrap-approver [--config FILE] audit verify   # recompute the audit hash chain
    agent-bootstrap-approver [--config FILE] api-keys {create,list,revoke,rotate} ...
                                        # manage API keys (approver.api_keys_cli)

Usage, against a **running approver** over HTTPS (the client config file, ``--config-file``;
:mod:`approver.cli`)::

    agent-bootstrap-approver agents {list,get,approve,reject,revoke,delete,bulk-approve} ...
    agent-bootstrap-approver audit list ...
    agent-bootstrap-approver completion {bash,zsh,tcsh}     # shell completion (no connection)

The client commands exit with :mod:`approver.cli.commands`'s codes (0 ok, 1 unreachable/5xx,
2 usage/config, 3 not found, 4 refused, 5 token refused); they read no approver settings.

Logging: ``logFormat``/``logLevel`` (bootstrap_token.log_setup); ``serve`` prints audit events as
JSON lines on stdout, the other commands store them and print them (on stderr) only with
``--print-audit``.

Exit codes: 0 done (chain intact), 1 the database could not be used, 2 bad configuration (the
message names the field: file key and environment variable), 3 the audit chain is broken (the
first broken link is named). ``api-keys`` exits with :mod:`approver.api_keys_cli`'s codes (3: no
such key, 4: the key cannot take the action).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO, TypeVar

from approver import api_keys_cli
from approver.audit.chain import ChainReport, ChainVerifier
from approver.cli import commands as client_commands
from approver.cli.completion import add_completion_parser, print_completion
from approver.config import ApproverSettings, ConfigError, EventLoop, load_settings
from approver.resources import open_store
from approver.serve import ListenError, serve
from approver.store import StoreUnavailable
from bootstrap_token import http_log, log_setup
from bootstrap_token.version import version_text

PROG = "agent-bootstrap-approver"
EXIT_BROKEN_CHAIN = 3
_T = TypeVar("_T")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="YAML settings file (camelCase keys); default: $AGENT_BOOTSTRAP_APPROVER_CONFIG",
    )
    common.add_argument(
        "--print-audit",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also print the audit events this command makes, as JSON lines on stderr (they "
        "are stored either way; serve always prints them on stdout)",
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Approves agent registrations that present a valid bootstrap token. "
        "serve, migrate, audit verify and api-keys work on the approver's database (its "
        "settings: --config); agents and audit list talk to a running approver over HTTPS "
        "(the client config file: --config-file).",
        epilog="database commands exit 0 ok, 1 database, 2 configuration, 3 broken chain/no "
        "such key, 4 key refused; running-approver commands: " + client_commands.EPILOG,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=version_text(PROG))
    commands = parser.add_subparsers(
        dest="command", metavar="{serve,migrate,audit,api-keys,agents,completion}"
    )
    commands.add_parser(
        "serve", parents=[common], help="(database) migrate, then serve (the default)"
    )
    commands.add_parser("migrate", parents=[common], help="(database) migrate it and exit")
    audit = commands.add_parser(
        "audit",
        parents=[common],
        help="audit chain tools: verify (database), list (running approver)",
    )
    audit_commands = audit.add_subparsers(
        dest="audit_command", metavar="{verify,list}", required=True
    )
    verify = audit_commands.add_parser(
        "verify",
        parents=[common],
        help="(database) recompute the audit hash chain; exit 3 and name the first broken "
        "link if broken",
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    client_commands.add_audit_list_parser(audit_commands)
    api_keys_cli.add_parser(commands, parents=[common])
    client_commands.add_agents_parser(commands)
    add_completion_parser(commands)
    return parser


async def _migrate(settings: ApproverSettings) -> str:
    store = open_store(settings)
    try:
        await store.migrate()
        return store.url
    finally:
        await store.close()


async def verify_audit(settings: ApproverSettings) -> ChainReport:
    """Read the chain head, then every stored audit event up to it, and recompute the chain
    (safe while replicas keep appending).

    Raises:
        StoreUnavailable: the database could not be read.
    """
    store = open_store(settings)
    try:
        head = await store.audit_head()
        verifier = ChainVerifier()
        async for item in store.iter_audit():
            # Events appended after the head was read (a serving replica) are the next run's.
            if item.seq > head[0] or not verifier.feed(item):
                break
        return verifier.finish(head)
    finally:
        await store.close()


def _report(report: ChainReport, *, as_json: bool) -> None:
    if as_json:
        body: dict[str, Any] = {
            "intact": report.broken is None,
            "checked": report.checked,
            "lastSeq": report.last_seq,
            "lastHash": report.last_hash,
        }
        if report.broken is not None:
            body["broken"] = {
                "seq": report.broken.seq,
                "problem": report.broken.problem,
                "detail": report.broken.detail,
            }
        print(json.dumps(body))
        return
    if report.broken is None:
        print(
            f"audit chain intact: {report.checked} event(s), last seq {report.last_seq}, "
            f"hash {report.last_hash}"
        )
    else:
        broken = report.broken
        print(
            f"audit chain BROKEN at event {broken.seq} ({broken.problem}): {broken.detail}; "
            f"{report.checked} event(s) before it verified"
        )


def run(settings: ApproverSettings, main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``main()`` on the event loop ``eventLoop`` asks for (uvloop when installed, for
    ``auto``)."""
    factory = None
    if settings.event_loop is not EventLoop.ASYNCIO:
        try:
            import uvloop
        except ModuleNotFoundError:
            if settings.event_loop is EventLoop.UVLOOP:
                raise ConfigError(
                    f"{settings.describe_field('eventLoop')}: uvloop is not installed"
                ) from None
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def _configure_logging(settings: ApproverSettings, args: argparse.Namespace) -> None:
    """``logFormat``/``logLevel``; audit lines on stdout when serving, on stderr for another
    command only with ``--print-audit`` (bootstrap_token.log_setup)."""
    if args.command in (None, "serve"):
        audit_stream: TextIO | None = sys.stdout
    else:
        audit_stream = sys.stderr if getattr(args, "print_audit", False) else None
    log_setup.configure(
        log_format=settings.log_format, level=settings.log_level, audit_stream=audit_stream
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line. Returns the exit code (0 ok, 1 database, 2 configuration, 3 broken
    audit chain; the client commands: :mod:`approver.cli.commands`)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "completion":
        return print_completion(parser, args.shell)
    if client_commands.is_client_command(args):
        return client_commands.run(args, prog=PROG)
    http_log.install()
    log_setup.configure()  # text at INFO until the settings say otherwise
    try:
        settings = load_settings(config_file=getattr(args, "config", None))
        _configure_logging(settings, args)
        if args.command == "migrate":
            url = run(settings, lambda: _migrate(settings))
            print(f"{PROG}: database migrated ({url})", file=sys.stderr)
        elif args.command == api_keys_cli.PROG:
            return api_keys_cli.run(
                args,
                database_url=settings.database_url,
                secret_dir=settings.api_keys.secret_dir,
                grace_seconds=settings.api_keys.rotation_grace_seconds,
            )
        elif args.command == "audit":
            report = run(settings, lambda: verify_audit(settings))
            _report(report, as_json=args.json)
            if report.broken is not None:
                return EXIT_BROKEN_CHAIN
        else:
            run(settings, lambda: serve(settings))
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except (StoreUnavailable, ListenError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
