"""``agent-bootstrap-webhook``: run the admission webhook.

Usage: ``agent-bootstrap-webhook [--config PATH]`` (or ``python -m webhook``).

Exit status: 0 after SIGTERM/SIGINT, 2 when the configuration, the signing key or the TLS files
cannot be used (the message names the field). Audit events go to stdout as JSON lines; other
logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bootstrap_token.audit import AUDIT_LOGGER
from webhook.config import CONFIG_ENV, ConfigError, load_settings
from webhook.server import load_credentials, serve

PROG = "agent-bootstrap-webhook"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Mutating admission webhook that stamps trusted agent pods with a "
        "bootstrap token. Settings come from AGENT_BOOTSTRAP_WEBHOOK_* variables over the "
        "YAML file.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help=f"YAML settings file (camelCase keys); default: ${CONFIG_ENV} if set",
    )
    return parser


def configure_logging() -> None:
    """Audit JSON lines to stdout (message only); everything else to stderr at INFO.

    Idempotent: calling it again replaces the handlers it installed.
    """
    audit = logging.getLogger(AUDIT_LOGGER)
    audit_handler = logging.StreamHandler(sys.stdout)
    audit_handler.setFormatter(logging.Formatter("%(message)s"))
    audit.handlers = [audit_handler]
    audit.setLevel(logging.INFO)
    audit.propagate = False

    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    root.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, load settings, serve until SIGTERM/SIGINT.

    Returns:
        0 on a clean stop, 2 on a bad configuration or unusable key/certificate file, 1 when
        the address cannot be bound, 130 on Ctrl-C during start-up.
    """
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(config_file=args.config)
        credentials = load_credentials(settings)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    configure_logging()
    try:
        asyncio.run(serve(settings, credentials=credentials))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return 130
    except OSError as exc:
        print(f"{PROG}: cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
