"""The HTTPS port: guard rails on ``POST /mutate``, liveness and readiness.

Routes:

* ``POST /mutate``: an AdmissionReview in, the response out (always HTTP 200 with
  ``allowed: true`` once a review with a ``request.uid`` has been read). Refused with a JSON body
  ``{"error": "<reason>"}``, an audit event naming the reason and the body's size, and a count
  (``errors_total{kind}``, ``reviews_total{decision="malformed"}``): 415 when the content type
  is not ``application/json`` or the body is compressed, 413 above ``maxRequestBytes`` (10 MiB
  by default: every review the API server can send for a storable pod, see
  :data:`webhook.config.DEFAULT_MAX_REQUEST_BYTES`) or above ``maxUnescapedRequestBytes`` with
  its ``\\u00XX`` escapes counted as one byte, 417 for an ``Expect`` other than
  ``100-continue``, 408 for a body not complete within ``bodyTimeoutSeconds``, 503
  (``Retry-After: 1``) when a body found no room in ``maxInFlightBodyBytes`` within its wait
  (:mod:`webhook.budget`), 400 for a body that cannot be read, an empty body, invalid JSON or
  anything that is not an AdmissionReview with a ``request.uid`` (the API server then applies
  the webhook's ``failurePolicy``; with ``Ignore`` the pod is admitted unchanged: a planted
  token stays, nothing is injected, which is why each of these is audited and counted).
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

Metrics are not here: they have their own plain-HTTP port (:mod:`bootstrap_token.metrics_http`),
so a scraper needs neither the CA nor a route through the API server's port.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
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
from bootstrap_token.http_guard import (
    ConnectionGuard,
    GuardedServer,
    GuardLimits,
    stalled_after,
)
from bootstrap_token.jsonio import dumps
from webhook.batch import IterationBatcher
from webhook.budget import ByteBudget
from webhook.config import WebhookSettings
from webhook.credentials import Credentials
from webhook.errors import MalformedReview, TransportRefusal
from webhook.handler import Reviewer
from webhook.inject import EnvInjection
from webhook.metrics import WebhookMetrics
from webhook.response import complete, errored
from webhook.review import parse_review
from webhook.sidecar import ProxyInjection
from webhook.stamp import StampConfig

logger = logging.getLogger(__name__)

JSON = "application/json"

#: How long an unread body is drained after an early answer (see WebhookHttp.server).
LINGERING_SECONDS = 2.0

#: A review body and the ``time.perf_counter()`` at which it was read.
ReviewJob = tuple[bytes, float]

#: Share of the API server's deadline for the call (its ``timeout`` query parameter) a body may
#: wait for room in the in-flight budget: the other half is for reading, deciding and answering.
API_SERVER_DEADLINE_SHARE = 0.5

# A Go time.Duration as String() writes it ("5s", "1m0s", "1.5s", "500ms"): client-go's
# Request.Timeout puts the API server's deadline for a webhook call in the ``timeout`` query
# parameter (k8s.io/apiserver admission webhook dispatchers: "set it as a parameter to inform
# the backend"), rounded up to whole seconds.
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def go_duration_seconds(text: str) -> float | None:
    """Seconds of a Go duration string such as ``5s`` or ``1m0s``; None when it is not one."""
    if not 0 < len(text) <= 32:
        return None
    total = 0.0
    position = 0
    for match in _GO_DURATION.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    return total if position == len(text) else None


def unescaped_size(body: bytes) -> int:
    """``len(body)`` with each ``\\u00XX`` escape counted as the one character it stands for.

    Go's JSON encoder writes ``&``, ``<``, ``>`` and control bytes that way (six bytes for one),
    so this is about the size of the review as it would be without those escapes. Every byte
    taken off is inside a string (JSON has no backslash elsewhere; an invalid body fails to
    parse), at least five per escape counted, so the structure of the body (what costs memory
    when parsed) is always counted in full.
    """
    return len(body) - 5 * body.count(b"\\u00")


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


def _too_large_unescaped(limit: int) -> TransportRefusal:
    return TransportRefusal(
        413, "too_large", f"request body exceeds {limit} bytes with its escapes decoded"
    )


async def read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The whole request body, as :meth:`aiohttp.web.BaseRequest.read` reads it, but not kept
    on the request.

    aiohttp holds the last request of a kept-alive connection until the next one arrives (up
    to its 75 s keep-alive), and ``read()`` caches the body on it: each connection the API
    server keeps open would hold its last review's body, up to ``maxRequestBytes``, outside
    the in-flight budget (12 kept-alive connections that each sent a 9.4 MB review: 113 MB;
    measured, the peak of 12 such reviews at once went from +178 to +88 MiB). Here the body
    lives only as long as its review.

    Raises:
        aiohttp.web.HTTPRequestEntityTooLarge: more than ``limit`` bytes (a chunked body).
    """
    payload = request.content
    chunks: list[bytes] = []
    size = 0
    while chunk := await payload.readany():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
        reviewer.refused(exc, detail=f"body {len(body)} bytes")
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
        budget: the in-flight body budget (``maxInFlightBodyBytes``, :mod:`webhook.budget`).
        reviewer: answers reviews (decide, audit, count).
        metrics: counters and histogram of this app.
        credentials: the key material in use (read per review and by ``/readyz``).
        lifecycle: shutdown state (``/readyz`` and ``Connection: close`` while draining).
        batcher: runs the CPU-bound part of the reviews of one event-loop iteration together.
    """

    __slots__ = (
        "batcher",
        "budget",
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
        self.budget = ByteBudget(settings.max_in_flight_body_bytes)

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
        length = request.content_length
        if request.content_type != JSON:
            return self._refuse(
                TransportRefusal(415, "unsupported_media_type", f"content type must be {JSON}"),
                length,
            )
        encoding = request.headers.get(hdrs.CONTENT_ENCODING)
        if encoding is not None and encoding.lower() != "identity":
            # The API server never compresses a review; a compressed body is a decompression
            # bomb's way in and a parser path nobody needs.
            return self._refuse(
                TransportRefusal(415, "unsupported_encoding", "content encoding must be identity"),
                length,
            )
        limit = self.settings.max_request_bytes
        # Refuse on the declared length before reading anything; read_body enforces the cap
        # for chunked bodies too.
        if length is not None and length > limit:
            return self._refuse(_too_large(limit), length)
        if hdrs.EXPECT in request.headers:
            refused = await self._expect_continue(request)
            if refused is not None:
                return refused
        if request.content.is_eof():
            # The usual case: the whole body came with the headers (a review is a few KiB).
            try:
                body = await read_body(request, limit)
            except web.HTTPRequestEntityTooLarge:  # a chunked body, all there, over the cap
                return self._refuse(_too_large(limit), length)
            return await self._answer(body)
        # A body still arriving holds its declared length (maxRequestBytes when chunked) of the
        # in-flight budget from before it is read until its review is answered: the body and
        # what parsing it builds are what maxInFlightBodyBytes bounds (webhook.budget).
        size = limit if length is None else length
        if not self.budget.try_reserve(size):
            refused = await self._wait_for_room(request, size, length)
            if refused is not None:
                return refused
        try:
            answer = await self._read_streaming(request, length)
            if isinstance(answer, web.Response):
                return answer
            return await self._answer(answer)
        finally:
            self.budget.release(size)

    async def _answer(self, body: bytes) -> web.Response:
        """The answer to a whole body: 413 when it decodes to more than
        ``maxUnescapedRequestBytes`` (checked only on bodies larger than that), else the review's
        answer. Parsing, deciding and serialising run batched with the other reviews of this
        event-loop iteration (webhook.batch); the duration metric counts from here."""
        unescaped_limit = self.settings.max_unescaped_request_bytes
        if len(body) > unescaped_limit and unescaped_size(body) > unescaped_limit:
            return self._refuse(_too_large_unescaped(unescaped_limit), len(body))
        return await self.batcher((body, time.perf_counter()))

    def budget_wait(self, request: web.BaseRequest) -> float:
        """Seconds a body may wait for room in the in-flight budget: ``bodyBudgetWaitSeconds``,
        at most half the API server's deadline for this call when the request carries it (the
        ``timeout`` query parameter, e.g. ``/mutate?timeout=5s`` for ``timeoutSeconds: 5``), so
        that reading, deciding and answering still fit before the API server gives up."""
        wait = self.settings.body_budget_wait_seconds
        deadline = request.query.get("timeout")
        if deadline is not None:
            seconds = go_duration_seconds(deadline)
            if seconds is not None:
                wait = min(wait, seconds * API_SERVER_DEADLINE_SHARE)
        return wait

    async def _wait_for_room(
        self, request: web.BaseRequest, size: int, length: int | None
    ) -> web.Response | None:
        """Wait for ``size`` bytes of the in-flight budget, in order of arrival, for at most
        :meth:`budget_wait` seconds. Returns None once they are reserved, else the 503
        (``Retry-After: 1``; the API server applies ``failurePolicy``, a retry goes to any
        replica)."""
        wait = self.budget_wait(request)
        try:
            async with asyncio.timeout(wait):
                await self.budget.reserve(size)
        except TimeoutError:
            self.metrics.budget_waited(admitted=False)
        else:
            self.metrics.budget_waited(admitted=True)
            return None
        response = self._refuse(
            TransportRefusal(503, "overloaded", "too many request bodies in flight"),
            length,
            f"no room in maxInFlightBodyBytes within {wait:g} s",
        )
        response.headers[hdrs.RETRY_AFTER] = "1"
        return response

    async def _read_streaming(
        self, request: web.BaseRequest, length: int | None
    ) -> bytes | web.Response:
        """Read a body still arriving (its budget reserved), within ``bodyTimeoutSeconds``.

        ``length`` is the declared length (None when chunked), for the audit line. A body slower
        than the timeout gets 408 and the connection closes.
        """
        try:
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                return await read_body(request, self.settings.max_request_bytes)
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(_too_large(self.settings.max_request_bytes), length)
        except TimeoutError:
            response = self._refuse(
                TransportRefusal(
                    408,
                    "body_timeout",
                    f"request body not received within {self.settings.body_timeout_seconds:g} s",
                ),
                length,
            )
            response.force_close()
            return response
        except (OSError, HttpProcessingError) as exc:
            # The client went away mid-body, or sent a body aiohttp cannot parse (bad
            # chunking): one audit event and a count, not aiohttp's traceback per connection.
            logger.info("request body unreadable: %s", type(exc).__name__)
            response = self._refuse(
                TransportRefusal(400, "body_unreadable", "request body could not be read"),
                length,
            )
            response.force_close()
            return response

    async def _expect_continue(self, request: web.BaseRequest) -> web.Response | None:
        """Answer ``Expect: 100-continue`` as aiohttp's router does (RFC 9110 section 10.1.1):
        ``100 Continue`` on HTTP/1.1, else 417; called once the headers passed the checks."""
        expect = request.headers.get(hdrs.EXPECT, "")
        if request.version == HttpVersion11 and expect.lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
            return None
        return self._refuse(
            TransportRefusal(417, "expectation_failed", "only Expect: 100-continue is supported"),
            request.content_length,
        )

    def _refuse(
        self, exc: TransportRefusal, body_bytes: int | None, detail: str | None = None
    ) -> web.Response:
        """Answer a transport refusal (:mod:`webhook.errors`): its status, a count and one audit
        line naming the reason and the body's size (declared or read; never its bytes)."""
        size = "body length not declared" if body_bytes is None else f"body {body_bytes} bytes"
        self.reviewer.refused(exc, detail=size if detail is None else f"{detail}; {size}")
        return _error(exc.status, exc.message)

    def _connection_refused(self, status: int, kind: str, message: str) -> None:
        """A refusal the connection guard made before any request existed (a head too slow,
        too many incomplete connections, an unparseable or oversized head): if it was the API
        server's, a pod went unchanged, so it is counted (``errors_total{kind}``) and audited
        like every other transport refusal."""
        self.reviewer.refused(
            TransportRefusal(status, kind, message), detail="before a whole request arrived"
        )

    def readyz(self) -> web.Response:
        """``GET /readyz``: ``200 ready``, or 503 with the reason (:func:`not_ready_reason`)."""
        reason = not_ready_reason(self.credentials, self.lifecycle)
        if reason is None:
            return web.Response(text="ready")
        return web.Response(text=f"not ready: {reason}", status=503)

    def request_factory(self) -> Callable[..., web.BaseRequest]:
        """Requests whose ``read()`` stops at ``maxRequestBytes`` (HTTP 413): a safety net, as
        ``/mutate`` reads with :func:`read_body`, which applies the same cap.

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
                stalled_after_seconds=stalled_after(self.settings.head_timeout_seconds),
            ),
            on_refusal=self._connection_refused,
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
        proxy=_proxy_injection(settings),
    )


def _proxy_injection(settings: WebhookSettings) -> ProxyInjection | None:
    """The :class:`~webhook.sidecar.ProxyInjection` of ``agentProxy``, or None (off)."""
    proxy = settings.agent_proxy
    if not proxy.enabled or proxy.image is None or proxy.upstream_url is None:
        return None
    return ProxyInjection(
        image=proxy.image,
        upstream_url=proxy.upstream_url,
        containers=frozenset(proxy.containers),
        url_variable=proxy.url_variable,
        ca_config_map=proxy.ca_config_map,
        ca_key=proxy.ca_key,
        port=proxy.port,
        image_pull_policy=proxy.image_pull_policy,
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
