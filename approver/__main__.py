"""``agent-bootstrap-approver``: serve the approver, or migrate its database and exit.

Usage::

    agent-bootstrap-approver [--config FILE] [serve]     # default: migrate, then serve
    agent-bootstrap-approver [--config FILE] migrate     # migrate and exit (an init container)

Exit codes: 0 done, 1 the database could not be migrated, 2 bad configuration (the message
names the field: file key and environment variable).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from approver.config import ApproverSettings, ConfigError, load_settings
from approver.server import serve
from approver.store import Store, StoreUnavailable

PROG = "agent-bootstrap-approver"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="YAML settings file (camelCase keys); default: $AGENT_BOOTSTRAP_APPROVER_CONFIG",
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Approves agent registrations that present a valid bootstrap token.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", metavar="{serve,migrate}")
    commands.add_parser("serve", parents=[common], help="migrate, then serve (the default)")
    commands.add_parser("migrate", parents=[common], help="migrate the database and exit")
    return parser


async def _migrate(settings: ApproverSettings) -> str:
    try:
        store = Store.open(settings.database_url)
    except ValueError as exc:
        raise ConfigError(f"databaseUrl: {exc}") from None
    try:
        await store.migrate()
        return store.url
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    """Run the command line. Returns the exit code (0 ok, 1 database, 2 configuration)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings(config_file=getattr(args, "config", None))
        if args.command == "migrate":
            url = asyncio.run(_migrate(settings))
            print(f"{PROG}: database migrated ({url})", file=sys.stderr)
        else:
            asyncio.run(serve(settings))
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
