"""One webhook process: its logging, and serving until SIGTERM/SIGINT.

Shared by the command line (:mod:`webhook.__main__`) and each worker process
(:mod:`webhook.workers`), which imports it in a fresh interpreter: neither imports the other.
"""

from __future__ import annotations

import asyncio
import sys

from bootstrap_token import http_log, log_setup
from webhook.config import ConfigError, WebhookSettings
from webhook.credentials import Credentials
from webhook.run import loop_factory, serve

PROG = "agent-bootstrap-webhook"


def configure_logging(settings: WebhookSettings | None = None) -> None:
    """Audit JSON lines to stdout (message only); everything else to stderr in ``logFormat``
    at ``logLevel`` (bootstrap_token.log_setup; text at INFO before the settings are known).

    Idempotent: calling it again replaces the handlers it installed.
    """
    http_log.install()
    if settings is None:
        log_setup.configure(audit_stream=sys.stdout)
        return
    log_setup.configure(
        log_format=settings.log_format, level=settings.log_level, audit_stream=sys.stdout
    )


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
