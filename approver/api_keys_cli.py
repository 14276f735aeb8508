"""``api-keys``: create, list, revoke and rotate API keys from the command line.

Wired into ``agent-bootstrap-approver`` with :func:`add_parser` and :func:`run`; also runs on its
own (``python -m approver.api_keys_cli --database-url URL ...``). It talks to the approver's
database directly (the same ``databaseUrl``), so it works before the approver serves, and
stores the same audit events as the admin API in the audit hash chain, each with its change
(actor ``cli:<login name>``); they are printed (JSON lines on standard error) only with
``--print-audit``::

    api-keys create --name docker-hosts-eu [--platform docker]...
                    [--agent-id-pattern 'docker-eu-*'] [--max-agents 20]
                    [--expires-in 90d | --expires-at 2026-03-01T00:00:00Z] [--json]
    api-keys list [--json]
    api-keys revoke KEY_ID
    api-keys rotate KEY_ID [--grace 24h] [--expires-in 90d | --expires-at ...] [--json]

``create`` and ``rotate`` print the new key alone on standard output (``KEY=$(... create ...)``)
and its metadata on standard error; with ``--json`` standard output is one JSON object
``{"apiKey": meta, "key": "abk_..."}`` (plus ``"replaced"`` for rotate). This is the only time the
key is shown. ``list`` never shows a secret.

Durations: an integer with an optional unit ``s``, ``m``, ``h``, ``d`` (``90d``, ``36h``, ``3600``).
Exit codes: 0 done, 1 database unavailable (or not migrated), 2 usage error, 3 no such key,
4 the key cannot take the action (revoked, rotated already, provisioned from the Secret).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from approver.api_keys.admin import ApiKeyAdmin, ApiKeyAdminError, ApiKeyNotFound
from approver.api_keys.records import ApiKeyRecord
from approver.api_keys.scope import ApiKeyScope
from approver.api_keys.secret_folder import SecretFolderKeys
from approver.api_keys.wire import key_json
from approver.store import Store, StoreUnavailable
from bootstrap_token import AuditSink, log_setup

PROG = "api-keys"
DATABASE_URL_ENV = "AGENT_BOOTSTRAP_APPROVER_DATABASE_URL"
EXIT_OK, EXIT_DATABASE, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT = 0, 1, 2, 3, 4

_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90d`` -> 7776000: seconds of an integer with an optional unit s/m/h/d.

    Raises:
        argparse.ArgumentTypeError: not of that form.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90d, 36h, 30m, 3600")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-03-01T00:00:00Z")
    return value


def _expiry_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--expires-in", type=parse_duration, metavar="DURATION")
    group.add_argument("--expires-at", type=_timestamp, metavar="RFC3339")
    parser.add_argument("--json", action="store_true", help="print JSON on standard output")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``create``/``list``/``revoke``/``rotate`` subcommands to ``parser``."""
    commands = parser.add_subparsers(dest="api_keys_command", metavar="{create,list,revoke,rotate}")
    commands.required = True
    create = commands.add_parser("create", help="create a key (printed once)")
    create.add_argument("--name", required=True, help="a label, 1..128 characters")
    create.add_argument(
        "--platform",
        action="append",
        default=[],
        dest="platforms",
        help="allowed agent platform (repeat for several; default: any)",
    )
    create.add_argument(
        "--agent-id-pattern", help="glob the whole agent id must match, e.g. 'docker-eu-*'"
    )
    create.add_argument("--max-agents", type=int, help="most agents this key may ever approve")
    _expiry_options(create)
    listing = commands.add_parser("list", help="list keys (never secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON on standard output")
    revoke = commands.add_parser("revoke", help="revoke a key now")
    revoke.add_argument("key_id", metavar="KEY_ID")
    rotate = commands.add_parser("rotate", help="create a successor, revoke the key after --grace")
    rotate.add_argument("key_id", metavar="KEY_ID")
    rotate.add_argument(
        "--grace",
        type=parse_duration,
        metavar="DURATION",
        help="how long the old key keeps working (default: 24h)",
    )
    _expiry_options(rotate)


def add_parser(commands: Any, *, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register ``api-keys`` on the approver's subcommands (``parser.add_subparsers()``)."""
    parser = commands.add_parser(
        PROG, parents=list(parents), help="(database) create, list, revoke and rotate API keys"
    )
    configure_parser(parser)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli"


def _print_key(record: ApiKeyRecord, *, err: TextIO, admin: ApiKeyAdmin, label: str) -> None:
    meta = key_json(record, at=admin.now())
    scope = meta["scope"]
    print(
        f"{label} {meta['id']} name={meta['name']!r} state={meta['state']} "
        f"platforms={','.join(scope['platforms']) or '*'} "
        f"agentIdPattern={scope['agentIdPattern'] or '*'} maxAgents={scope['maxAgents'] or '-'} "
        f"expiresAt={meta['expiresAt'] or '-'} revokeAt={meta['revokeAt'] or '-'}",
        file=err,
    )


async def _run(args: argparse.Namespace, *, admin: ApiKeyAdmin, out: TextIO, err: TextIO) -> int:
    command = args.api_keys_command
    actor = _actor()
    if command == "create":
        scope = ApiKeyScope(
            platforms=frozenset(args.platforms),
            agent_id_pattern=args.agent_id_pattern,
            max_agents=args.max_agents,
        )
        expires_at = args.expires_at or (
            admin.now() + timedelta(seconds=args.expires_in) if args.expires_in else None
        )
        issued = await admin.create(name=args.name, actor=actor, scope=scope, expires_at=expires_at)
        if args.json:
            body = {"apiKey": key_json(issued.record, at=admin.now()), "key": issued.key}
            print(json.dumps(body), file=out)
        else:
            _print_key(issued.record, err=err, admin=admin, label="created")
            print(issued.key, file=out)
            print("store this key now: it is not shown again", file=err)
        return EXIT_OK
    if command == "list":
        keys = await admin.list_keys(actor=actor)
        at = admin.now()
        if args.json:
            print(json.dumps({"apiKeys": [key_json(k, at=at) for k in keys]}), file=out)
            return EXIT_OK
        print(f"{'ID':<16}  {'STATE':<8}  {'SOURCE':<6}  {'USED':>4}  {'MAX':>4}  NAME", file=out)
        for key in keys:
            limit = str(key.scope.max_agents) if key.scope.max_agents is not None else "-"
            print(
                f"{key.key_id:<16}  {key.state(at).value:<8}  {key.source.value:<6}  "
                f"{key.approved_count:>4}  {limit:>4}  {key.name}",
                file=out,
            )
        return EXIT_OK
    if command == "revoke":
        result = await admin.revoke(key_id=args.key_id, actor=actor)
        _print_key(
            result.record, err=err, admin=admin, label="revoked" if result.changed else "unchanged"
        )
        return EXIT_OK
    expires_at = args.expires_at or (
        admin.now() + timedelta(seconds=args.expires_in) if args.expires_in else None
    )
    rotation = await admin.rotate(
        key_id=args.key_id, actor=actor, grace_seconds=args.grace, expires_at=expires_at
    )
    if args.json:
        at = admin.now()
        body = {
            "apiKey": key_json(rotation.new.record, at=at),
            "key": rotation.new.key,
            "replaced": key_json(rotation.old, at=at),
        }
        print(json.dumps(body), file=out)
    else:
        _print_key(rotation.old, err=err, admin=admin, label="rotating")
        _print_key(rotation.new.record, err=err, admin=admin, label="created")
        print(rotation.new.key, file=out)
        print("store this key now: it is not shown again", file=err)
    return EXIT_OK


async def run_async(
    args: argparse.Namespace,
    *,
    engine: AsyncEngine,
    secret_dir: Path | None = None,
    grace_seconds: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    audit: AuditSink | None = None,
    store: Store | None = None,
) -> int:
    """Run a parsed ``api-keys`` command on ``engine`` (the engine stays open). Returns the exit
    code (module docstring). With ``store`` (the approver's store on ``engine``) each change's
    audit event is stored in the audit hash chain with the change."""
    out = out or sys.stdout
    err = err or sys.stderr
    folder = SecretFolderKeys(secret_dir) if secret_dir is not None else None
    if folder is not None:
        folder.load()
    admin = ApiKeyAdmin(
        engine=engine,
        store=store,
        audit=audit or AuditSink(),
        clock=time.time,
        folder=folder,
        **({"default_grace_seconds": grace_seconds} if grace_seconds is not None else {}),
    )
    try:
        return await _run(args, admin=admin, out=out, err=err)
    except (ValidationError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=err)
        return EXIT_USAGE
    except ApiKeyAdminError as exc:
        print(f"{PROG}: {exc.code}: {exc.message}", file=err)
        return EXIT_NOT_FOUND if isinstance(exc, ApiKeyNotFound) else EXIT_CONFLICT
    except StoreUnavailable as exc:
        print(f"{PROG}: {exc} (is the database migrated? run 'migrate')", file=err)
        return EXIT_DATABASE


def run(
    args: argparse.Namespace,
    *,
    database_url: str,
    secret_dir: Path | None = None,
    grace_seconds: int | None = None,
) -> int:
    """Run a parsed ``api-keys`` command against ``database_url`` (the approver's
    ``databaseUrl``); ``secret_dir`` is ``apiKeys.secretDir`` (its keys are listed and refuse
    revoke/rotate). Returns the exit code."""

    async def go() -> int:
        # The approver's own store: each change and its audit event (in the audit hash chain)
        # commit together, as through the admin API; SQLite waits up to 5 s for the serving
        # approver's write lock.
        try:
            store = Store.open(database_url)
        except ValueError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        try:
            return await run_async(
                args,
                engine=store.engine,
                store=store,
                secret_dir=secret_dir,
                grace_seconds=grace_seconds,
            )
        finally:
            await store.close()

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m approver.api_keys_cli [--database-url URL] ...``."""
    parser = argparse.ArgumentParser(prog=PROG, description="Manage the approver's API keys.")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV),
        help=f"the approver's databaseUrl (default: ${DATABASE_URL_ENV})",
    )
    parser.add_argument("--secret-dir", type=Path, help="apiKeys.secretDir, if any")
    parser.add_argument(
        "--print-audit",
        action="store_true",
        help="also print the audit events made, as JSON lines on stderr (stored either way)",
    )
    configure_parser(parser)
    args = parser.parse_args(argv)
    if not args.database_url:
        print(f"{PROG}: pass --database-url or set {DATABASE_URL_ENV}", file=sys.stderr)
        return EXIT_USAGE
    log_setup.configure(audit_stream=sys.stderr if args.print_audit else None)
    return run(args, database_url=args.database_url, secret_dir=args.secret_dir)


if __name__ == "__main__":
    sys.exit(main())
