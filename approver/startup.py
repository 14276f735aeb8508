"""Starting before the database: the approver waits for it instead of exiting.

An approver whose database is not reachable yet (PostgreSQL still starting, a network policy
applied a moment late) used to exit 1, and Kubernetes restarted it with growing delays (a crash
loop). :func:`migrate_when_reachable` instead tries the migration again with backoff
(:data:`FIRST_DELAY_SECONDS` doubling up to :data:`MAX_DELAY_SECONDS`), logging on every attempt
what it waits for (the database's URL without its password, and the driver's error) and when it
tries next. Meanwhile :func:`waiting_app` answers on the approver's own port:

* ``GET /healthz``: 200 (the process is alive: no restart would help);
* ``GET /readyz``: 503 ``waiting for the database`` (no traffic is sent its way);
* ``POST /api/v1/agents/register``: ``202`` pending with ``Retry-After`` (StreamSpace's agent
  exits on a 503 and keeps waiting on a 202), nothing written;
* anything else: ``503 store_unavailable`` with ``Retry-After``.

Once the migration succeeds, the waiting server stops and the real one starts on the same port.
A stop (SIGTERM) while waiting ends the wait at once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

from approver.http.answers import pending_retry_answer
from approver.store import Store, StoreUnavailable
from bootstrap_token.http_guard import ConnectionGuard, GuardedAppRunner, GuardLimits

log = logging.getLogger(__name__)

#: Backoff between migration attempts, in seconds: 1, 2, 4, ... 30, 30, ...
FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0

REGISTER_PATH = "/api/v1/agents/register"


def waiting_app(retry_after_seconds: int) -> web.Application:
    """The application served while waiting for the database (module docstring)."""
    retry = {"Retry-After": str(retry_after_seconds)}

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="not ready: waiting for the database", status=503)

    async def register(_: web.Request) -> web.Response:
        body = pending_retry_answer("store_unavailable", "the approver's database is not ready")
        return web.json_response(body, status=202, headers=retry)

    async def other(_: web.Request) -> web.Response:
        return web.json_response(
            {"error": "store_unavailable", "message": "the approver is waiting for its database"},
            status=503,
            headers=retry,
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post(REGISTER_PATH, register)
    app.router.add_route("*", "/{tail:.*}", other)
    return app


async def migrate_when_reachable(
    store: Store,
    *,
    stop: asyncio.Event,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    retry_after_seconds: int,
    limits: GuardLimits,
    first_delay: float | None = None,
    max_delay: float | None = None,
) -> bool:
    """Migrate ``store``, waiting with backoff while the database is unavailable.

    The first attempt is made before anything listens; from the first failure until success,
    :func:`waiting_app` serves on ``host:port``.

    ``first_delay`` and ``max_delay`` (seconds) default to :data:`FIRST_DELAY_SECONDS` and
    :data:`MAX_DELAY_SECONDS`, read at the call.

    Returns:
        True once migrated; False when ``stop`` was set first.

    Raises:
        Exception: anything but :class:`approver.store.StoreUnavailable` from the migration
            (a bug, a migration that fails on a reachable database) ends the wait.
    """
    try:
        await store.migrate()
        return True
    except StoreUnavailable as exc:
        first_error = exc
    runner = GuardedAppRunner(
        waiting_app(retry_after_seconds), guard=ConnectionGuard(limits), access_log=None
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        longest = MAX_DELAY_SECONDS if max_delay is None else max_delay
        delay = FIRST_DELAY_SECONDS if first_delay is None else first_delay
        attempt, error = 1, first_error
        while True:
            log.warning(
                "waiting for the database %s (attempt %d failed: %s); not ready, next attempt "
                "in %g s",
                store.url,
                attempt,
                error,
                delay,
            )
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return False
            except TimeoutError:
                pass
            attempt += 1
            try:
                await store.migrate()
            except StoreUnavailable as exc:
                error = exc
                delay = min(delay * 2, longest)
                continue
            log.info("database %s reachable after %d attempts; migrated", store.url, attempt)
            return True
    finally:
        await runner.cleanup()
