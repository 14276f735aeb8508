"""The aiohttp app of the HTTPS port: guard rails on ``POST /mutate``, liveness and readiness.

Routes:

* ``POST /mutate``: an AdmissionReview in, the response out (always HTTP 200 with
  ``allowed: true`` once a review with a ``request.uid`` has been read). Refused with a JSON body
  ``{"error": "<reason>"}``: 415 when the content type is not ``application/json``, 413 above
  ``maxRequestBytes`` (3 MiB by default), 400 for an empty body, invalid JSON or anything that
  is not an AdmissionReview with a ``request.uid`` (the API server then applies the webhook's
  ``failurePolicy``; with ``Ignore`` the pod is admitted unstamped).
* ``GET /healthz``: ``200 ok`` while the event loop answers (liveness).
* ``GET /readyz``: ``200 ready`` when a signing key and a certificate are loaded and the process
  is not shutting down; otherwise ``503`` naming what is missing (readiness).

Metrics are not here: they have their own plain-HTTP port (:mod:`webhook.metrics_server`), so a
scraper needs neither the CA nor a route through the API server's port.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry

from bootstrap_token import AuditSink
from bootstrap_token.jsonio import dumps
from webhook.config import WebhookSettings
from webhook.credentials import Credentials
from webhook.handler import Reviewer
from webhook.inject import EnvInjection
from webhook.metrics import WebhookMetrics
from webhook.response import complete, errored
from webhook.review import MalformedReview, parse_review
from webhook.stamp import StampConfig

logger = logging.getLogger(__name__)


@dataclass
class Lifecycle:
    """Process state for the probes and the drain.

    Attributes:
        draining: set on SIGTERM: ``/readyz`` answers 503 and every answer carries
            ``Connection: close``, so clients move their kept-alive connections elsewhere.
        in_flight: reviews being handled now (from the request line to the answer, body reading
            included), so the drain can wait for exactly those.
    """

    draining: bool = False
    in_flight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def __post_init__(self) -> None:
        self._idle.set()

    def started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no review is in flight (bound it with ``asyncio.timeout``)."""
        await self._idle.wait()


# Everything stored on the app, declared together.
SETTINGS = web.AppKey("settings", WebhookSettings)
REVIEWER = web.AppKey("reviewer", Reviewer)
METRICS = web.AppKey("metrics", WebhookMetrics)
CREDENTIALS = web.AppKey("credentials", Credentials)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)

JSON = "application/json"


def _refuse(reviewer: Reviewer, status: int, exc: MalformedReview) -> web.Response:
    reviewer.refused(exc)
    return web.Response(body=dumps({"error": exc.message}), status=status, content_type=JSON)


async def mutate(request: web.Request) -> web.Response:
    """``POST /mutate``: see the module docstring for statuses."""
    lifecycle = request.app[LIFECYCLE]
    lifecycle.started()
    try:
        response = await _mutate(request)
    finally:
        lifecycle.finished()
    if lifecycle.draining:
        response.force_close()  # answer, then close: the client reconnects to another replica
    return response


async def _mutate(request: web.Request) -> web.Response:
    app = request.app
    reviewer = app[REVIEWER]
    if request.content_type != JSON:
        return _refuse(
            reviewer, 415, MalformedReview("unsupported_media_type", f"content type must be {JSON}")
        )
    limit = app[SETTINGS].max_request_bytes
    # Refuse on the declared length before reading anything; read() enforces the cap
    # (client_max_size) for chunked bodies too.
    length = request.content_length
    if length is not None and length > limit:
        return _refuse(reviewer, 413, _too_large(limit))
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _refuse(reviewer, 413, _too_large(limit))
    try:
        review = parse_review(body)
    except MalformedReview as exc:
        return _refuse(reviewer, 400, exc)
    try:
        document = reviewer.answer(review)
    except Exception:
        # Last resort (answer() handles decision failures itself): still echo the uid.
        logger.exception("admission uid=%s: failed to record the answer", review.request.uid)
        document = complete(
            errored(reason="internal_error"),
            api_version=review.api_version,
            uid=review.request.uid,
        )
    return web.Response(body=dumps(document), content_type=JSON)


def _too_large(limit: int) -> MalformedReview:
    return MalformedReview("too_large", f"request body exceeds {limit} bytes")


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: ``200 ok`` while the process serves requests."""
    return web.Response(text="ok")


def not_ready_reason(credentials: Credentials, lifecycle: Lifecycle) -> str | None:
    """Why the webhook is not ready, or None when it is.

    Returns:
        ``shutting down``, ``no signing key loaded`` or ``no serving certificate loaded``.
    """
    if lifecycle.draining:
        return "shutting down"
    if credentials.signing is None:
        return "no signing key loaded"
    if credentials.tls is None:
        return "no serving certificate loaded"
    return None


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: ``200 ready``, or ``503`` with the reason (see :func:`not_ready_reason`)."""
    reason = not_ready_reason(request.app[CREDENTIALS], request.app[LIFECYCLE])
    if reason is None:
        return web.Response(text="ready")
    return web.Response(text=f"not ready: {reason}", status=503)


def stamp_config(settings: WebhookSettings) -> StampConfig:
    """The :class:`~webhook.stamp.StampConfig` part of ``settings``."""
    inject = settings.inject_env
    return StampConfig(
        trust=settings.trust,
        annotation_key=settings.annotation_key,
        issuer=settings.issuer,
        audience=settings.audience,
        cluster=settings.cluster,
        ttl_seconds=settings.token_ttl_seconds,
        inject_env=EnvInjection(containers=frozenset(inject.containers), variable=inject.variable)
        if inject.enabled
        else None,
    )


def create_app(
    settings: WebhookSettings,
    *,
    credentials: Credentials,
    clock: Callable[[], float] = time.time,
    audit: AuditSink | None = None,
    metrics: WebhookMetrics | None = None,
    lifecycle: Lifecycle | None = None,
) -> web.Application:
    """Build the webhook's aiohttp application (the HTTPS port's routes).

    Args:
        settings: validated settings (``client_max_size`` is ``maxRequestBytes``).
        credentials: the key material holder; without a signing key every trusted pod is
            answered ``no_signing_key`` (allowed, unstamped, warning) and ``/readyz`` is 503.
        clock: seconds since the epoch, read once per review.
        audit: audit sink (default: the ``agent_bootstrap.audit`` logger).
        metrics: where to count (default: on a new registry).
        lifecycle: shutdown state for ``/readyz`` (default: a new one, not draining).

    Returns:
        The application; serve it with :func:`webhook.run.serve` or aiohttp's test client.
    """
    app = web.Application(client_max_size=settings.max_request_bytes)
    app_metrics = metrics or WebhookMetrics(registry=CollectorRegistry())
    app[SETTINGS] = settings
    app[METRICS] = app_metrics
    app[CREDENTIALS] = credentials
    app[LIFECYCLE] = lifecycle or Lifecycle()
    app[REVIEWER] = Reviewer(
        config=stamp_config(settings),
        credentials=credentials,
        clock=clock,
        audit=audit or AuditSink(),
        metrics=app_metrics,
    )
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
