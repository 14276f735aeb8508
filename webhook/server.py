"""The aiohttp transport: guard rails on ``POST /mutate``, health, metrics, and serving over TLS.

Routes:

* ``POST /mutate``: an AdmissionReview in, the response out (always HTTP 200 with
  ``allowed: true`` once a review with a ``request.uid`` has been read). Refused with a JSON body
  ``{"error": "<reason>"}``: 415 when the content type is not ``application/json``, 413 above
  ``maxRequestBytes``, 400 for an empty body, invalid JSON or anything that is not an
  AdmissionReview with a ``request.uid`` (the API server then applies the webhook's
  ``failurePolicy``; with ``Ignore`` the pod is admitted unstamped).
* ``GET /healthz``: ``200 ok`` (liveness/readiness).
* ``GET /metrics``: Prometheus text format.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from bootstrap_token import AuditSink, KeyLoadError, SigningKey
from webhook.config import ConfigError, WebhookSettings
from webhook.handler import Reviewer
from webhook.metrics import WebhookMetrics
from webhook.response import complete, errored
from webhook.review import MalformedReview, parse_review
from webhook.stamp import StampConfig
from webhook.tls import server_ssl_context

logger = logging.getLogger(__name__)

# Everything stored on the app, declared together.
SETTINGS = web.AppKey("settings", WebhookSettings)
REVIEWER = web.AppKey("reviewer", Reviewer)
METRICS = web.AppKey("metrics", WebhookMetrics)

JSON = "application/json"


def _refuse(reviewer: Reviewer, status: int, exc: MalformedReview) -> web.Response:
    reviewer.refused(exc)
    return web.json_response({"error": exc.message}, status=status)


async def mutate(request: web.Request) -> web.Response:
    """``POST /mutate``: see the module docstring for statuses."""
    reviewer = request.app[REVIEWER]
    if request.content_type != JSON:
        return _refuse(
            reviewer, 415, MalformedReview("unsupported_media_type", f"content type must be {JSON}")
        )
    limit = request.app[SETTINGS].max_request_bytes
    too_large = MalformedReview("too_large", f"request body exceeds {limit} bytes")
    # Refuse on the declared length before reading anything; read() enforces the cap
    # (client_max_size) for chunked bodies too.
    if request.content_length is not None and request.content_length > limit:
        return _refuse(reviewer, 413, too_large)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _refuse(reviewer, 413, too_large)
    try:
        review = parse_review(body)
    except MalformedReview as exc:
        return _refuse(reviewer, 400, exc)
    try:
        document = reviewer.answer(review)
    except Exception:
        # Last resort (answer() handles decision failures itself): still echo the uid.
        logger.error("admission uid=%s: failed to record the answer", review.request.uid)
        document = complete(
            errored(reason="internal_error"),
            api_version=review.api_version,
            uid=review.request.uid,
        )
    return web.json_response(document)


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: ``200 ok`` while the process serves requests."""
    return web.Response(text="ok")


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: the app's Prometheus registry in text exposition format."""
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def stamp_config(settings: WebhookSettings) -> StampConfig:
    """The :class:`~webhook.stamp.StampConfig` part of ``settings``."""
    return StampConfig(
        trust=settings.trust,
        annotation_key=settings.annotation_key,
        issuer=settings.issuer,
        audience=settings.audience,
        cluster=settings.cluster,
        ttl_seconds=settings.token_ttl_seconds,
    )


def create_app(
    settings: WebhookSettings,
    *,
    signing_key: SigningKey | None,
    clock: Callable[[], float] = time.time,
    audit: AuditSink | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """Build the webhook's aiohttp application.

    Args:
        settings: validated settings (``client_max_size`` is ``maxRequestBytes``).
        signing_key: the loaded Ed25519 key; None answers every trusted pod with
            ``no_signing_key`` (allowed, unstamped, warning).
        clock: seconds since the epoch, read once per review.
        audit: audit sink (default: the ``agent_bootstrap.audit`` logger).
        registry: Prometheus registry for this app's metrics (default: a new one).

    Returns:
        The application; serve it with :func:`serve` or aiohttp's test client.
    """
    app = web.Application(client_max_size=settings.max_request_bytes)
    app_metrics = WebhookMetrics(registry=registry or CollectorRegistry())
    app[SETTINGS] = settings
    app[METRICS] = app_metrics
    app[REVIEWER] = Reviewer(
        config=stamp_config(settings),
        signing_key=signing_key,
        clock=clock,
        audit=audit or AuditSink(),
        metrics=app_metrics,
    )
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


def load_signing_key(settings: WebhookSettings) -> SigningKey:
    """Load ``signingKeyFile`` once.

    Raises:
        ConfigError: unreadable, or not an unencrypted PEM Ed25519 private key; the message
            names ``signingKeyFile`` and the path, never key bytes.
    """
    path = settings.signing_key_file
    try:
        return SigningKey.from_file(path)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"signingKeyFile {path}: cannot read: {reason}") from None
    except KeyLoadError as exc:
        raise ConfigError(f"signingKeyFile {path}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Credentials:
    """Key material loaded once at start: the token signing key and the serving TLS context."""

    signing_key: SigningKey
    ssl_context: ssl.SSLContext = field(repr=False)


def load_credentials(settings: WebhookSettings) -> Credentials:
    """Load ``signingKeyFile``, ``tlsCertFile`` and ``tlsKeyFile``.

    Raises:
        ConfigError: a file cannot be read or used (names the field, never key bytes).
    """
    return Credentials(
        signing_key=load_signing_key(settings),
        ssl_context=server_ssl_context(
            cert_file=settings.tls_cert_file, key_file=settings.tls_key_file
        ),
    )


async def serve(
    settings: WebhookSettings,
    *,
    credentials: Credentials | None = None,
    on_started: Callable[[list[Any]], None] | None = None,
) -> None:
    """Serve the webhook over HTTPS until SIGTERM or SIGINT, then stop cleanly.

    Args:
        settings: validated settings.
        credentials: already loaded key material; when None it is loaded here, once, before
            listening (see :func:`load_credentials`).
        on_started: called with the listening socket addresses once the site is up
            (useful with ``port: 0`` in tests).

    Raises:
        ConfigError: the signing key or TLS files cannot be loaded (names the field).
        OSError: the address cannot be bound.
    """
    if credentials is None:
        credentials = load_credentials(settings)
    signing_key = credentials.signing_key
    ssl_context = credentials.ssl_context
    app = create_app(settings, signing_key=signing_key)
    # No access log: every review already writes one audit line, and probes would be noise.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    try:
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_context)
        await site.start()
        addresses = list(runner.addresses)
        logger.info(
            "webhook listening on %s (kid=%s, cluster=%s)",
            ", ".join(f"https://{a[0]}:{a[1]}" for a in addresses),
            signing_key.kid,
            settings.cluster,
        )
        if on_started is not None:
            on_started(addresses)
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        logger.info("webhook stopping")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
