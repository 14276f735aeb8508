"""One webhook process: its logging, and serving until SIGTERM/SIGINT.

Shared by the command line (:mod:`webhook.__main__`) and each worker process
(:mod:`webhook.workers`), which imports it in a fresh interpreter: neither imports the other.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from bootstrap_token import http_log
from bootstrap_token.audit import AUDIT_LOGGER
from webhook.config import ConfigError, WebhookSettings
from webhook.credentials import Credentials
from webhook.run import loop_factory, serve

PROG = "agent-bootstrap-webhook"


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
