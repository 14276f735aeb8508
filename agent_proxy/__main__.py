"""``agent-bootstrap-agent-proxy``: run the agent proxy until SIGTERM/SIGINT (module
:mod:`agent_proxy`). Exit 2 on bad settings (the variable named), 1 when the port cannot be
bound."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

import aiohttp
from aiohttp import web

from agent_proxy.config import ConfigError, ProxySettings, load_settings
from agent_proxy.enroll import Enrollment
from agent_proxy.server import create_app
from bootstrap_token.version import version_text

log = logging.getLogger("agent_proxy")


async def run(
    settings: ProxySettings,
    *,
    stop: asyncio.Event | None = None,
    local_address: str | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT when None).

    ``local_address``: the address outgoing connections leave from (the demo's stand-in for the
    pod's own IP, which a real sidecar has by sharing the pod's network namespace).
    """
    stopping = stop or asyncio.Event()
    if stop is None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
    connector = aiohttp.TCPConnector(local_addr=(local_address, 0) if local_address else None)
    async with aiohttp.ClientSession(connector=connector) as session:
        enrollment = Enrollment(settings, session)
        enrollment.load()
        renewing = asyncio.create_task(enrollment.run(), name="certificate-renewal")
        runner = web.AppRunner(
            create_app(enrollment, session, settings.upstream_url), access_log=None
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.listen_host, settings.listen_port).start()
            log.info(
                "agent proxy on http://%s:%d -> %s",
                settings.listen_host,
                settings.listen_port,
                settings.upstream_url,
            )
            await stopping.wait()
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await runner.cleanup()


PROG = "agent-bootstrap-agent-proxy"


def main(argv: list[str] | None = None) -> int:
    """Entry point: settings from the environment only (``--help``, ``--version``)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The agent proxy sidecar: holds the agent's client certificate and "
        "originates mutual TLS to the approver. Settings: AGENT_BOOTSTRAP_PROXY_* variables "
        "(agent_proxy.config).",
    )
    parser.add_argument("--version", action="version", version=version_text(PROG))
    parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(settings))
    except OSError as exc:
        print(f"{PROG}: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
