"""The ``certs-tooling`` command line.

Exit codes: 0 success; 1 the operation was refused or failed (message on stderr); 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from certs_tooling.init import AlreadyInitialised, InitOptions, run_init
from certs_tooling.layout import Layout


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of days, got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="certs-tooling",
        description="Keys and certificates for agent-bootstrap: CA, serving certificates, "
        "Ed25519 signing keys, JWKS.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = sub.add_parser(
        "init",
        help="write a CA, webhook and approver serving certificates, a signing key and the JWKS",
        description="Write a new CA, serving certificates for the webhook and approver Services, "
        "the first Ed25519 signing key and its JWKS into a folder. Private keys get mode 0600.",
    )
    init.add_argument("--out", type=Path, required=True, help="folder to write into")
    init.add_argument("--namespace", default="agent-bootstrap", help="namespace of the Services")
    init.add_argument("--webhook-service", default="agent-bootstrap-webhook")
    init.add_argument("--approver-service", default="agent-bootstrap-approver")
    init.add_argument("--dns", action="append", default=[], help="extra DNS SAN (repeatable)")
    init.add_argument("--ip", action="append", default=[], help="extra IP SAN (repeatable)")
    init.add_argument(
        "--local",
        action="store_true",
        help="also add localhost, 127.0.0.1 and ::1 (for local runs and the demo)",
    )
    init.add_argument("--ca-days", type=_positive, default=5 * 365, help="CA validity (days)")
    init.add_argument("--leaf-days", type=_positive, default=365, help="leaf validity (days)")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def _cmd_init(args: argparse.Namespace) -> int:
    options = InitOptions(
        namespace=args.namespace,
        webhook_service=args.webhook_service,
        approver_service=args.approver_service,
        extra_dns=args.dns,
        extra_ips=args.ip,
        local=args.local,
        ca_days=args.ca_days,
        leaf_days=args.leaf_days,
    )
    layout = Layout(args.out)
    try:
        kid = run_init(layout, options, now=datetime.now(UTC), force=args.force)
    except AlreadyInitialised as exc:
        print(f"certs-tooling init: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"certs-tooling init: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(layout.all_files())} files to {layout.root} (signing key kid {kid})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``certs-tooling`` console script. Returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "init":
        return _cmd_init(args)
    raise AssertionError(f"unhandled command {args.command}")  # argparse guarantees this


if __name__ == "__main__":
    raise SystemExit(main())
