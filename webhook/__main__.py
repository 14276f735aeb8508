"""``agent-bootstrap-webhook``: run the admission webhook.

Usage: ``agent-bootstrap-webhook [--config PATH]`` (or ``python -m webhook``).

Exit status: 0 after SIGTERM/SIGINT, 2 when the configuration, the TLS files or an existing
signing key file cannot be used (the message names the field), 1 when the address cannot be
bound or workers keep crashing. A signing key file that does not exist yet is waited for (the
webhook is not ready until then). Audit events go to stdout as JSON lines; other logs go to
stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bootstrap_token import http_log
from bootstrap_token.audit import AUDIT_LOGGER
from webhook.config import CONFIG_ENV, ConfigError, WebhookSettings, load_settings
from webhook.credentials import Credentials
from webhook.run import load_initial, loop_factory, serve

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

    http_log.install()
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    root.setLevel(logging.INFO)


def run_server(
    settings: WebhookSettings, *, credentials: Credentials | None = None, worker: bool = False
) -> int:
    """Serve one process on the event loop chosen by ``eventLoop`` until SIGTERM/SIGINT.

    Returns:
        0 on a clean stop, 1 when the address cannot be bound, 2 when the material cannot be
        used (a worker loads it itself) or ``eventLoop: uvloop`` is not installed, 130 on Ctrl-C
        during start-up.
    """
    try:
        factory = loop_factory(settings.event_loop)
    except ImportError:
        field = settings.describe_field("eventLoop")
        print(f"{PROG}: {field}: uvloop is not installed", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(settings, credentials=credentials, worker=worker))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return 130
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, load settings, serve until SIGTERM/SIGINT.

    Returns:
        0 on a clean stop, 2 on a bad configuration or unusable key/certificate file, 1 when
        the address cannot be bound or workers keep crashing, 130 on Ctrl-C during start-up.
    """
    args = _parser().parse_args(argv)
    configure_logging()  # before the key is loaded: a warning about its file mode is logged
    try:
        settings = load_settings(config_file=args.config)
        credentials = load_initial(settings)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        from webhook.workers import supervise

        return supervise(settings)
    return run_server(settings, credentials=credentials)


if __name__ == "__main__":
    raise SystemExit(main())
