"""The HTTPS port: guard rails on ``POST /mutate``, liveness and readiness.

Routes:

* ``POST /mutate``: an AdmissionReview in, the response out (always HTTP 200 with
  ``allowed: true`` once a review with a ``request.uid`` has been read). Refused with a JSON body
  ``{"error": "<reason>"}``, an audit event and a count: 415 when the content type is not
  ``application/json`` or the body is compressed, 413 above ``maxRequestBytes`` (3 MiB by
  default), 417 for an ``Expect`` other than ``100-continue``, 408 for a body not complete
  within ``bodyTimeoutSeconds``, 503 (``Retry-After: 1``) when bodies being received would
  exceed ``maxInFlightBodyBytes``, 400 for a body that cannot be read, an empty body, invalid
  JSON or anything that is not an AdmissionReview with a ``request.uid`` (the API server then
  applies the webhook's ``failurePolicy``; with ``Ignore`` the pod is admitted unstamped).
* ``GET /healthz``: ``200 ok`` while the event loop answers (liveness).
* ``GET /readyz``: ``200 ready`` when a signing key and a certificate are loaded and the process
  is not shutting down; otherwise ``503`` naming what is missing (readiness).
* anything else: 404 (405 with ``Allow`` for a known path with another method), JSON.

Before any route, the connection guard (:mod:`bootstrap_token.http_guard`): a request's head
must arrive within ``headTimeoutSeconds`` (408), at most ``maxIncompleteConnections``
connections may be without a whole request (503 + ``Retry-After``), and a request the parser
refuses gets JSON without its bytes (431 for a header over 8 KiB, else 400).

It runs on aiohttp's low-level server (:class:`aiohttp.web.Server`, "Low Level Server" in
aiohttp's docs): three fixed routes need no router, no middleware chain and no
:class:`~aiohttp.web.Application`, whose per-request dispatch cost about 4 µs of the webhook's
100 (docs/webhook.md). HTTP parsing, keep-alive, TLS and the response writing stay aiohttp's.

Metrics are not here: they have their own plain-HTTP port (:mod:`webhook.metrics_server`), so a
scraper needs neither the CA nor a route through the API server's port.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import HttpVersion11, RawRequestMessage
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CollectorRegistry

from bootstrap_token import AuditSink
from bootstrap_token.http_guard import ConnectionGuard, GuardedServer, GuardLimits
from bootstrap_token.jsonio import dumps
from webhook.batch import IterationBatcher
from webhook.config import WebhookSettings
from webhook.credentials import Credentials
from webhook.errors import MalformedReview, TransportRefusal
from webhook.handler import Reviewer
from webhook.inject import EnvInjection
from webhook.metrics import WebhookMetrics
from webhook.response import complete, errored
from webhook.review import parse_review
from webhook.stamp import StampConfig

logger = logging.getLogger(__name__)

JSON = "application/json"

#: How long an unread body is drained after an early answer (see WebhookHttp.server).
LINGERING_SECONDS = 2.0

#: A review body and the ``time.perf_counter()`` at which it was read.
ReviewJob = tuple[bytes, float]


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


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(
        body=dumps({"error": message}), status=status, content_type=JSON, headers=headers or None
    )


def _too_large(limit: int) -> TransportRefusal:
    return TransportRefusal(413, "too_large", f"request body exceeds {limit} bytes")


def review_body(reviewer: Reviewer, job: ReviewJob) -> web.Response:
    """The HTTP answer to one review body; never raises.

    Args:
        reviewer: answers parsed reviews.
        job: (the request body, ``time.perf_counter()`` when it was read).

    Returns:
        400 with ``{"error": ...}`` when the body is not an AdmissionReview (see
        :func:`webhook.review.parse_review`), else 200 with the AdmissionReview answer, which
        is ``allowed: true`` whatever happens inside (docs/design.md, "Failure semantics").
    """
    body, started = job
    try:
        review = parse_review(body)
    except MalformedReview as exc:
        reviewer.refused(exc)
        return _error(400, exc.message)
    try:
        document = reviewer.answer(review, started=started, review_bytes=len(body))
    except Exception:
        # Last resort (answer() handles decision failures itself): still echo the uid.
        logger.exception("admission uid=%r: failed to record the answer", review.request.uid)
        document = complete(
            errored(reason="internal_error"),
            api_version=review.api_version,
            uid=review.request.uid,
        )
    return web.Response(body=dumps(document), content_type=JSON)


#: The methods each known path answers (HEAD as GET, as aiohttp's router does).
ALLOWED = {"/mutate": ("POST",), "/healthz": ("GET", "HEAD"), "/readyz": ("GET", "HEAD")}


class WebhookHttp:
    """The request handler of the HTTPS port, for :class:`aiohttp.web.Server`.

    Build with :func:`create_app`; serve :meth:`server` with :class:`aiohttp.web.ServerRunner`
    (tests run the same server under aiohttp's ``RawTestServer``).

    Attributes:
        settings: validated settings; ``maxRequestBytes`` caps every request body.
        reviewer: answers reviews (decide, audit, count).
        metrics: counters and histogram of this app.
        credentials: the key material in use (read per review and by ``/readyz``).
        lifecycle: shutdown state (``/readyz`` and ``Connection: close`` while draining).
        batcher: runs the CPU-bound part of the reviews of one event-loop iteration together.
    """

    __slots__ = (
        "_body_bytes",
        "batcher",
        "credentials",
        "lifecycle",
        "metrics",
        "reviewer",
        "settings",
    )

    def __init__(
        self,
        *,
        settings: WebhookSettings,
        reviewer: Reviewer,
        metrics: WebhookMetrics,
        credentials: Credentials,
        lifecycle: Lifecycle,
    ) -> None:
        self.settings = settings
        self.reviewer = reviewer
        self.metrics = metrics
        self.credentials = credentials
        self.lifecycle = lifecycle
        self.batcher: IterationBatcher[ReviewJob, web.Response] = IterationBatcher(
            functools.partial(review_body, reviewer)
        )
        self._body_bytes = 0  # declared sizes of the bodies being received (_read_streaming)

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        """Route one request: see the module docstring."""
        path = request.path
        method = request.method
        if path == "/mutate" and method == "POST":
            return await self.mutate(request)
        if path == "/healthz" and method in ("GET", "HEAD"):
            return web.Response(text="ok")
        if path == "/readyz" and method in ("GET", "HEAD"):
            return self.readyz()
        allowed = ALLOWED.get(path)
        if allowed is None:
            return _error(404, "not found")
        return _error(405, f"method {method} not allowed", Allow=", ".join(allowed))

    async def mutate(self, request: web.BaseRequest) -> web.Response:
        """``POST /mutate``: see the module docstring for statuses."""
        lifecycle = self.lifecycle
        lifecycle.started()
        try:
            response = await self._mutate(request)
        finally:
            lifecycle.finished()
        if lifecycle.draining:
            response.force_close()  # answer, then close: the client reconnects to another replica
        return response

    async def _mutate(self, request: web.BaseRequest) -> web.Response:
        if request.content_type != JSON:
            return self._refuse(
                TransportRefusal(415, "unsupported_media_type", f"content type must be {JSON}")
            )
        encoding = request.headers.get(hdrs.CONTENT_ENCODING)
        if encoding is not None and encoding.lower() != "identity":
            # The API server never compresses a review; a compressed body is a decompression
            # bomb's way in and a parser path nobody needs.
            return self._refuse(
                TransportRefusal(415, "unsupported_encoding", "content encoding must be identity")
            )
        limit = self.settings.max_request_bytes
        # Refuse on the declared length before reading anything; read() enforces the cap
        # (client_max_size, see request_factory) for chunked bodies too.
        length = request.content_length
        if length is not None and length > limit:
            return self._refuse(_too_large(limit))
        if hdrs.EXPECT in request.headers:
            refused = await self._expect_continue(request)
            if refused is not None:
                return refused
        if request.content.is_eof():
            # The usual case: the whole body came with the headers (a review is a few KiB).
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:  # a chunked body, all there, over the cap
                return self._refuse(_too_large(limit))
        else:
            answer = await self._read_streaming(request, limit if length is None else length)
            if isinstance(answer, web.Response):
                return answer
            body = answer
        # Parsing, deciding and serialising run batched with the other reviews of this
        # event-loop iteration (webhook.batch); the duration metric counts from here.
        return await self.batcher((body, time.perf_counter()))

    async def _read_streaming(self, request: web.BaseRequest, size: int) -> bytes | web.Response:
        """Read a body still arriving, within ``bodyTimeoutSeconds`` and the in-flight budget.

        ``size`` is the declared length (``maxRequestBytes`` for a chunked body); bodies being
        received at once may hold at most ``maxInFlightBodyBytes`` together, else 503 with
        ``Retry-After: 1`` (the API server applies ``failurePolicy``; a retry goes to any
        replica). A body slower than the timeout gets 408 and the connection closes.
        """
        budget = self.settings.max_in_flight_body_bytes
        if self._body_bytes + size > budget:
            response = self._refuse(
                TransportRefusal(503, "overloaded", "too many request bodies in flight")
            )
            response.headers[hdrs.RETRY_AFTER] = "1"
            return response
        self._body_bytes += size
        try:
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(_too_large(self.settings.max_request_bytes))
        except TimeoutError:
            response = self._refuse(
                TransportRefusal(
                    408,
                    "body_timeout",
                    f"request body not received within {self.settings.body_timeout_seconds:g} s",
                ),
            )
            response.force_close()
            return response
        except (OSError, HttpProcessingError) as exc:
            # The client went away mid-body, or sent a body aiohttp cannot parse (bad
            # chunking): one audit event and a count, not aiohttp's traceback per connection.
            logger.info("request body unreadable: %s", type(exc).__name__)
            response = self._refuse(
                TransportRefusal(400, "body_unreadable", "request body could not be read")
            )
            response.force_close()
            return response
        finally:
            self._body_bytes -= size

    async def _expect_continue(self, request: web.BaseRequest) -> web.Response | None:
        """Answer ``Expect: 100-continue`` as aiohttp's router does (RFC 9110 section 10.1.1):
        ``100 Continue`` on HTTP/1.1, else 417; called once the headers passed the checks."""
        expect = request.headers.get(hdrs.EXPECT, "")
        if request.version == HttpVersion11 and expect.lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
            return None
        return self._refuse(
            TransportRefusal(417, "expectation_failed", "only Expect: 100-continue is supported")
        )

    def _refuse(self, exc: TransportRefusal) -> web.Response:
        """Answer a transport refusal (:mod:`webhook.errors`): audited, counted, its status."""
        self.reviewer.refused(exc)
        return _error(exc.status, exc.message)

    def readyz(self) -> web.Response:
        """``GET /readyz``: ``200 ready``, or 503 with the reason (:func:`not_ready_reason`)."""
        reason = not_ready_reason(self.credentials, self.lifecycle)
        if reason is None:
            return web.Response(text="ready")
        return web.Response(text=f"not ready: {reason}", status=503)

    def request_factory(self) -> Callable[..., web.BaseRequest]:
        """Requests whose ``read()`` stops at ``maxRequestBytes`` (HTTP 413).

        Call from the event loop that serves (the requests are bound to it).
        """
        loop = asyncio.get_running_loop()
        limit = self.settings.max_request_bytes

        def make(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            # What aiohttp's own factory does (web_server.Server._make_request), plus the cap.
            return web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=limit
            )

        return make

    def server(self, **kwargs: Any) -> web.Server:
        """The low-level aiohttp server of this handler. ``kwargs`` go to
        :class:`aiohttp.web.Server` and override these defaults:

        * no access log: every review writes one audit line already;
        * ``auto_decompress=False``: a compressed body is refused (415) unread, never inflated;
        * ``lingering_time=2``: after an early answer (413, 408, 503) the rest of an unread
          body is drained for at most 2 s (aiohttp's default 10), so the client reads the
          answer rather than a reset, without holding the connection long.
        """
        options: dict[str, Any] = {
            "access_log": None,
            "auto_decompress": False,
            "lingering_time": LINGERING_SECONDS,
        }
        options.update(kwargs)
        guard = ConnectionGuard(
            GuardLimits(
                head_timeout_seconds=self.settings.head_timeout_seconds,
                max_incomplete=self.settings.max_incomplete_connections,
            )
        )
        return GuardedServer(self, guard=guard, request_factory=self.request_factory(), **options)


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
) -> WebhookHttp:
    """Build the handler of the webhook's HTTPS port.

    Args:
        settings: validated settings (``maxRequestBytes`` caps request bodies).
        credentials: the key material holder; without a signing key every trusted pod is
            answered ``no_signing_key`` (allowed, unstamped, warning) and ``/readyz`` is 503.
        clock: seconds since the epoch, read once per review.
        audit: audit sink (default: the ``agent_bootstrap.audit`` logger).
        metrics: where to count (default: on a new registry).
        lifecycle: shutdown state for ``/readyz`` (default: a new one, not draining).

    Returns:
        The handler; :func:`webhook.run.serve` serves its :meth:`WebhookHttp.server`.
    """
    app_metrics = metrics or WebhookMetrics(registry=CollectorRegistry())
    reviewer = Reviewer(
        config=stamp_config(settings),
        credentials=credentials,
        clock=clock,
        audit=audit or AuditSink(),
        metrics=app_metrics,
    )
    return WebhookHttp(
        settings=settings,
        reviewer=reviewer,
        metrics=app_metrics,
        credentials=credentials,
        lifecycle=lifecycle or Lifecycle(),
    )
