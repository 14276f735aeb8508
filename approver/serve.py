"""``serve``: run the approver until SIGTERM/SIGINT: open what the settings name
(:mod:`approver.resources`), migrate the store, build the application (:mod:`approver.http.app`)
and serve it on ``host:port`` (HTTPS when a certificate is configured), draining on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time
from collections.abc import Callable, Iterator

from aiohttp import web
from kubernetes_asyncio.client import ApiClient

from approver.audit.sampling import LineSampler
from approver.config import ApproverSettings
from approver.http.app import create_app
from approver.http.app_keys import (
    ADMIN_TOKENS_KEY,
)
from approver.metrics import ApproverMetrics, MeteredReloadCounts
from approver.resources import (
    load_key_set,
    open_kube,
    open_store,
    serving_certificate,
)
from approver.startup import migrate_when_reachable
from bootstrap_token import KeySet
from bootstrap_token.http_guard import (
    ConnectionGuard,
    GuardedAppRunner,
    GuardLimits,
    stalled_after,
)
from bootstrap_token.metrics_http import start_metrics
from bootstrap_token.reload import ReloadCounts

log = logging.getLogger(__name__)


class ListenError(Exception):
    """The approver's own port cannot be bound (in use, or not allowed): exit 1 with this
    message, not a traceback."""


async def serve(
    settings: ApproverSettings,
    *,
    stop: asyncio.Event | None = None,
    tls_reloads: ReloadCounts | None = None,
) -> None:
    """Run the approver until SIGTERM/SIGINT (or until ``stop`` is set).

    Loads the key set, the serving certificate and the tokens files, opens the store and
    migrates it (waiting with backoff, not ready, while the database is unavailable:
    :mod:`approver.startup`), opens the Kubernetes client when enabled, then serves on
    ``host:port`` (HTTPS when ``tlsCertFile`` is set) until told to stop, and closes everything
    on the way out. From start to stop the certificate files are looked at every
    ``tlsReloadIntervalSeconds`` and a renewed pair is served to new connections
    (:mod:`approver.files.serving_tls`); the outcomes are counted in ``tls_reloads`` when given.

    Raises:
        ConfigError: a file named by the settings cannot be used.
    """
    key_set = load_key_set(settings)
    metrics = ApproverMetrics()
    certificate = serving_certificate(
        settings, counts=tls_reloads or MeteredReloadCounts(metrics, material="tls")
    )
    if certificate is not None:
        serving = certificate
        metrics.tls_expiry.set_function(lambda: serving.material.not_after - time.time())
    interval = settings.tls_reload_interval_seconds
    following: asyncio.Task[None] | None = None
    if certificate is not None and interval > 0:
        following = asyncio.create_task(certificate.follow(interval))
    try:
        await _serve(settings, stop, key_set, certificate.context if certificate else None, metrics)
    finally:
        if following is not None:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following


async def _serve(
    settings: ApproverSettings,
    stop: asyncio.Event | None,
    key_set: KeySet,
    ssl_context: ssl.SSLContext | None,
    metrics: ApproverMetrics,
) -> None:
    """:func:`serve` once the key set and the listener's TLS context are loaded."""
    store = open_store(settings)
    limits = GuardLimits(
        head_timeout_seconds=settings.head_timeout_seconds,
        max_incomplete=settings.max_incomplete_connections,
        stalled_after_seconds=stalled_after(settings.head_timeout_seconds),
    )
    kube: ApiClient | None = None
    with _stop_signals(stop) as stopping:
        try:
            migrated = await migrate_when_reachable(
                store,
                stop=stopping,
                host=settings.host,
                port=settings.port,
                ssl_context=ssl_context,
                retry_after_seconds=settings.retry_after_seconds,
                limits=limits,
            )
            if not migrated:
                log.info("stopping")
                await store.close()
                return
            kube = await open_kube(settings)
            app = create_app(settings, key_set=key_set, store=store, kube=kube, metrics=metrics)
        except BaseException:
            if kube is not None:
                await kube.close()
            await store.close()
            raise
        # lingering_time: after an early answer (408 for a stalled body, 413) the rest of an
        # unread body is drained for at most 2 s (aiohttp's default 10), as the webhook does.
        runner = GuardedAppRunner(
            app,
            guard=ConnectionGuard(limits, on_refusal=_log_guard_refusal(metrics)),
            access_log=None,
            lingering_time=2,
        )
        await runner.setup()
        metrics_runner: web.AppRunner | None = None
        try:
            site = web.TCPSite(
                runner, settings.host, settings.port, ssl_context=ssl_context, backlog=1024
            )
            try:
                await site.start()
            except OSError as exc:
                raise ListenError(
                    f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
                ) from None
            metrics_runner = await _start_metrics(settings, metrics)
            _log_listening(settings, app, store.url, len(key_set), ssl_context is not None)
            await stopping.wait()
            log.info("stopping")
        finally:
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            await runner.cleanup()


async def _start_metrics(
    settings: ApproverSettings, metrics: ApproverMetrics
) -> web.AppRunner | None:
    """Listen on ``metricsHost:metricsPort`` for ``GET /metrics`` (None: ``metricsPort`` 0).
    A port that cannot be bound is logged and the approver serves without metrics (a scrape
    target that is down alerts by itself; agents must not wait for it)."""
    if not settings.metrics_port:
        return None
    return await start_metrics(
        metrics.registry, host=settings.metrics_host, port=settings.metrics_port, logger=log
    )


def _log_listening(
    settings: ApproverSettings, app: web.Application, store_url: str, keys: int, tls: bool
) -> None:
    if not tls:
        log.warning("serving plain HTTP: terminate TLS in front of the approver")
    if settings.auto_approve.enabled and not settings.kubernetes.enabled:
        # docs/security-model.md, "Forged review" and "Stolen signing key".
        log.warning(
            "auto-approving without kubernetes.enabled: tokens are not checked against the "
            "live pod, so a token minted for a made-up review (anyone who reaches the "
            "webhook's port) approves; turn it on or keep the webhook's NetworkPolicy narrow"
        )
    log.info(
        "approver listening on %s://%s:%d (database %s, auto-approve %s, %d key(s), "
        "%d admin token(s), kubernetes %s, api keys %s, service-account tokens %s, agent "
        "certificates %s)",
        "https" if tls else "http",
        settings.host,
        settings.port,
        store_url,
        "on" if settings.auto_approve.enabled else "off",
        keys,
        len(app[ADMIN_TOKENS_KEY].current()),
        "on" if settings.kubernetes.enabled else "off",
        "on" if settings.api_keys.enabled else "off",
        settings.service_account_tokens.mode if settings.service_account_tokens.enabled else "off",
        (
            ("required at the gate" if settings.agent_certificates.require_at_gate else "on")
            if settings.agent_certificates.enabled
            else "off"
        ),
    )


@contextlib.contextmanager
def _stop_signals(stop: asyncio.Event | None) -> Iterator[asyncio.Event]:
    """``stop`` itself when given; otherwise an event SIGTERM and SIGINT set, for the block."""
    if stop is not None:
        yield stop
        return
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, event.set)
    try:
        yield event
    finally:
        for sig in signals:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)


def _log_guard_refusal(metrics: ApproverMetrics) -> Callable[[int, str, str], None]:
    """A WARNING for each kind of refusal the connection guard makes before a request exists
    (408 slow head, 503 too many incomplete connections, 431/400 unparseable), at most one per
    kind per 10 s with the count left out (approver.audit.sampling): a flood of stalled clients
    is a few lines, and a real agent refused is not silent. Each is counted in
    ``connection_refusals_total{kind}``."""
    sampler = LineSampler()

    def refused(status: int, error: str, message: str) -> None:
        metrics.connection_refusals.labels(error).inc()
        left_out = sampler.admit(error, time.monotonic())
        if left_out is None:
            return
        more = f"; {left_out} more like it in the last 10 s" if left_out else ""
        log.warning(
            "refused a connection before a whole request: %d %s (%s)%s",
            status,
            error,
            message,
            more,
        )

    return refused
