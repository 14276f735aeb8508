"""Serving one webhook process: load material, listen, rotate, drain on SIGTERM.

Start (:func:`load_initial`): the serving certificate must load (there is nothing to serve
without it); a signing key file that does not exist *yet* is waited for (the process serves,
answers ``no_signing_key``, and ``/readyz`` stays 503 until the file appears); a key file that
exists but is not an Ed25519 key is a configuration error.

Stop (SIGTERM or SIGINT), bounded by ``shutdownDelaySeconds + shutdownGraceSeconds`` (+1 s):

1. ``/readyz`` answers 503 at once, every answer carries ``Connection: close`` (kept-alive API
   server connections move to other replicas), and reviews are still served for
   ``shutdownDelaySeconds`` (default 2) while the endpoints controller takes the pod out of the
   Service;
2. the listener closes; reviews in flight, including those whose body is still arriving, get
   ``shutdownGraceSeconds`` (default 10, the usual webhook ``timeoutSeconds``: the API server
   stops waiting after that anyway) to finish. The connections stay open meanwhile: aiohttp's
   own shutdown stops reading from them at once, which would strand a review mid-body;
3. then aiohttp closes the idle connections (and cancels what is still running, after at most
   one more second), and the metrics listener and the file watcher stop.

A second signal skips what is left of step 1. Keep the pod's ``terminationGracePeriodSeconds``
(default 30) above the sum of both settings, or the kubelet's SIGKILL cuts step 2 short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from bootstrap_token import AuditSink
from bootstrap_token.metrics_http import start_metrics as start_metrics_listener
from webhook.audit import BatchingAuditSink
from webhook.config import EventLoop, WebhookSettings
from webhook.credentials import Credentials, MaterialMissing, load_signing
from webhook.metrics import WebhookMetrics
from webhook.reload import Reloader
from webhook.server import Lifecycle, create_app
from webhook.tls import load_tls, swapping_context, tls_files

logger = logging.getLogger(__name__)

Address = Any  # a socket address tuple, (host, port) for IPv4

#: aiohttp's shutdown wait after the drain: handlers still running are cancelled after this.
FINAL_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Listening:
    """Where the process listens once started (useful with port 0 in tests).

    Attributes:
        https: socket addresses of the HTTPS (review) listener.
        metrics: socket addresses of the plain-HTTP metrics listener; empty when off.
    """

    https: list[Address]
    metrics: list[Address] = field(default_factory=list)


def load_initial(settings: WebhookSettings) -> Credentials:
    """Load the serving certificate and, when its file exists, the signing key.

    Returns:
        Credentials with ``tls`` set, and ``signing`` set unless the key file does not exist.

    Raises:
        MaterialError: the certificate files cannot be used, or the key file exists but is not
            a usable Ed25519 key (the message names the field).
    """
    credentials = Credentials(tls=load_tls(tls_files(settings)))
    with contextlib.suppress(MaterialMissing):  # serve() says so once logging is set up
        credentials.signing = load_signing(
            settings.signing_key_file, field_name=settings.describe_field("signingKeyFile")
        )
    return credentials


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop constructor for ``eventLoop``: uvloop's, or None for asyncio's default.

    Raises:
        ImportError: ``uvloop`` was asked for explicitly and cannot be imported.
    """
    if choice is EventLoop.ASYNCIO:
        return None
    try:
        import uvloop
    except ImportError:  # not installed (or a broken build): asyncio's loop serves as well
        if choice is EventLoop.UVLOOP:
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def start_metrics(
    settings: WebhookSettings, registry: CollectorRegistry
) -> web.AppRunner | None:
    """Listen on ``metricsHost:metricsPort`` for ``GET /metrics``.

    Returns:
        The runner, or None when the port cannot be bound: that is logged as an error and the
        webhook serves reviews without a metrics port (a scrape target that is down alerts on
        its own; a webhook that refuses to start over its metrics port would leave every pod
        unstamped).
    """
    return await start_metrics_listener(
        registry, host=settings.metrics_host, port=settings.metrics_port, logger=logger
    )


async def serve(
    settings: WebhookSettings,
    *,
    credentials: Credentials | None = None,
    audit: AuditSink | None = None,
    on_started: Callable[[Listening], None] | None = None,
    worker: bool = False,
    registry: CollectorRegistry | None = None,
) -> None:
    """Serve the webhook over HTTPS until SIGTERM or SIGINT, then drain and stop.

    Args:
        settings: validated settings.
        credentials: material from :func:`load_initial`; loaded here when None.
        audit: audit sink (default: JSON lines on stdout, batched per loop iteration).
        on_started: called once both listeners are up.
        worker: one of several processes on the port (``workers > 1``): bind with
            ``SO_REUSEPORT`` and leave the metrics port to the supervisor.
        registry: Prometheus registry (default: a new one).

    Raises:
        MaterialError: the certificate or an existing signing key file cannot be used.
        OSError: an address cannot be bound.
    """
    if credentials is None:
        credentials = load_initial(settings)
    if credentials.tls is None:
        raise ValueError("serve() needs credentials with a serving certificate")
    registry = registry or CollectorRegistry()
    metrics = WebhookMetrics(registry=registry)
    reloader = Reloader(
        credentials=credentials,
        signing_key_file=settings.signing_key_file,
        tls_files=tls_files(settings),
        metrics=metrics,
        signing_key_field=settings.describe_field("signingKeyFile"),
    )
    # No fingerprint is recorded yet, so the first look loads the files once more and compares
    # digests: a change between the initial load and that look is not missed.
    reloader.publish()
    lifecycle = Lifecycle()
    loop = asyncio.get_running_loop()
    batching = BatchingAuditSink(sys.stdout, loop) if audit is None else None
    audit = audit or batching
    app = create_app(
        settings, credentials=credentials, audit=audit, metrics=metrics, lifecycle=lifecycle
    )
    # No access log (see WebhookHttp.server). shutdown_timeout bounds aiohttp's own wait,
    # after ours (see the module docstring).
    runner = web.ServerRunner(app.server(), shutdown_timeout=FINAL_TIMEOUT_SECONDS)
    metrics_runner: web.AppRunner | None = None
    stop = asyncio.Event()
    hurry = asyncio.Event()

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()

    signals = (signal.SIGTERM, signal.SIGINT)
    watcher: asyncio.Task[None] | None = None
    await runner.setup()
    try:
        site = web.TCPSite(
            runner,
            settings.host,
            settings.port,
            ssl_context=swapping_context(credentials.tls, lambda: credentials.tls),
            reuse_port=worker or None,
        )
        await site.start()
        listening = Listening(https=list(runner.addresses))
        if settings.metrics_port and not worker:
            metrics_runner = await start_metrics(settings, registry)
            if metrics_runner is not None:
                listening = Listening(https=listening.https, metrics=list(metrics_runner.addresses))
        if settings.reload_interval_seconds > 0:
            watcher = asyncio.create_task(reloader.run(settings.reload_interval_seconds))
        logger.info(
            "webhook listening on %s (kid=%s, cluster=%s, loop=%s)%s",
            ", ".join(f"https://{a[0]}:{a[1]}" for a in listening.https),
            credentials.signing.kid if credentials.signing else None,
            settings.cluster,
            type(loop).__module__.split(".")[0],
            "".join(f", metrics on http://{a[0]}:{a[1]}/metrics" for a in listening.metrics),
        )
        if credentials.signing is None:
            logger.warning(
                "%s %s: not found; serving unstamped and not ready until it appears",
                settings.describe_field("signingKeyFile"),
                settings.signing_key_file,
            )
        if on_started is not None:
            on_started(listening)
        for sig in signals:
            loop.add_signal_handler(sig, on_signal)
        await stop.wait()
        lifecycle.draining = True
        logger.info(
            "webhook stopping: not ready, serving %.1fs more, then %.1fs for reviews in flight",
            settings.shutdown_delay_seconds,
            settings.shutdown_grace_seconds,
        )
        if settings.shutdown_delay_seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hurry.wait(), settings.shutdown_delay_seconds)
    finally:
        lifecycle.draining = True
        for running in runner.sites:
            await running.stop()  # no new connections; open ones keep being read
        try:
            async with asyncio.timeout(settings.shutdown_grace_seconds):
                await lifecycle.wait_idle()
        except TimeoutError:
            logger.warning(
                "%d reviews still in flight after %.1fs; cancelling them",
                lifecycle.in_flight,
                settings.shutdown_grace_seconds,
            )
        await runner.cleanup()
        # Removed only now: a repeated SIGTERM during the drain must not kill the process.
        for sig in signals:
            loop.remove_signal_handler(sig)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        if batching is not None:
            batching.flush()
        logger.info("webhook stopped")
