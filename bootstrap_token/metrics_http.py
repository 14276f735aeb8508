"""The plain-HTTP metrics port of both services (``metricsPort``: the webhook's default 9090,
the approver's 9091): ``GET /metrics`` only.

Separate from the HTTPS port on purpose: Prometheus scrapes the pod IP without the service's
CA, a scrape never competes with the API server's or the agents' calls for the TLS listener,
and a NetworkPolicy can open the two ports to different peers. The metrics hold no secrets
(kids, counts, ages, reason codes).

With several webhook workers (``workers > 1``) the supervisor serves this port and reads every
worker's prometheus_client multiprocess files
(``prometheus_client.multiprocess.MultiProcessCollector``).
"""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

REGISTRY = web.AppKey("registry", CollectorRegistry)


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: the registry in Prometheus text exposition format (version 0.0.4)."""
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_metrics_app(registry: CollectorRegistry) -> web.Application:
    """The metrics port's application, exposing ``registry``."""
    app = web.Application()
    app[REGISTRY] = registry
    app.router.add_get("/metrics", metrics)
    return app


async def start_metrics(
    registry: CollectorRegistry, *, host: str, port: int, logger: logging.Logger
) -> web.AppRunner | None:
    """Listen on ``host:port`` for ``GET /metrics`` of ``registry``.

    Returns:
        The runner (its ``cleanup()`` stops the listener), or None when the port cannot be
        bound: that is logged on ``logger`` as an error naming ``metricsPort``, and the service
        serves without a metrics port (a scrape target that is down alerts on its own; a
        service that refused to start over its metrics port would leave pods unstamped or
        agents waiting).
    """
    runner = web.AppRunner(create_metrics_app(registry), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        logger.error(
            "metricsPort: cannot listen on %s:%d (%s); serving without metrics",
            host,
            port,
            exc.strerror or exc,
        )
        await runner.cleanup()
        return None
    return runner
