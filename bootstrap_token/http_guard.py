"""The HTTP connection guard of both services' ports: no request byte in an error answer, a
deadline on a request's head, and a cap on connections that have not sent a whole request.

aiohttp's own protocol (:class:`aiohttp.web_protocol.RequestHandler`) answers a request it
cannot parse with a plain-text 400 that quotes the offending bytes (a header over 8 KiB: the
first 100 bytes of its value, a bootstrap token or an admin bearer), and it holds a connection
that sent part of a head for its keep-alive timeout (75 s) whatever it sends. A few hundred
such connections are cheap for a client and each costs the server a socket and a buffer.
:class:`GuardedServer` is :class:`aiohttp.web.Server` with :class:`GuardedRequestHandler` as
its protocol:

* **Unparseable requests** get JSON with no byte of the request: a request line or header field
  over ``max_field_size`` (8190 bytes) or too many header fields is ``431
  request_header_fields_too_large`` (RFC 6585 section 5; a long request line gets it too rather
  than 414, since the parser does not say which line it was), anything else ``400
  malformed_http_request`` naming only the parser's exception class. One DEBUG line is logged,
  without the bytes (the service logs or audits the refusal, sampled, through ``on_refusal``;
  :mod:`bootstrap_token.http_log` also keeps them out of aiohttp's lines).
* **A request's head has ``head_timeout_seconds``** from the connection (for the first request)
  or from its first byte (for the next one on a kept-alive connection) to arrive whole;
  otherwise the connection gets ``408 request_timeout`` (RFC 9110 section 15.5.9) and is closed.
  Reading the body is bounded by each service where it reads it (the webhook's and the
  approver's ``bodyTimeoutSeconds``).
* **At most ``max_incomplete`` connections at once are incomplete**: opened (or, kept alive, sent
  a first byte of a next request) and not yet through their request's body. When one more
  arrives at the cap, stalled connections are closed with ``503 too_many_incomplete_requests``
  and ``Retry-After: 1`` until there is room: first heads that have waited
  ``stalled_after_seconds`` (1 s), oldest first; then bodies that have been read that long at
  under :data:`MIN_BODY_BYTES_PER_SECOND` on average (a trickle), oldest first. A newcomer is
  never refused: while nothing has stalled it is let in over the cap, so a burst of real
  clients is read in turn, and only connections that hold a slot without sending are closed.
  (Refusing newcomers once every slot was a body let 300 trickled bodies lock every genuine
  agent out of the approver: the second outside attack.) A connection whose request is whole,
  an agent's open WebSocket included, is never counted or closed by the guard; an idle
  kept-alive connection is aiohttp's keep-alive timeout's. A handler reading a body whose
  connection was closed sees a ``ConnectionResetError`` from its read, which each service
  answers quietly.

The TLS handshake comes before any of this (asyncio's ``ssl_handshake_timeout``, 60 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from bootstrap_token import jsonio

log = logging.getLogger(__name__)

#: aiohttp's limits on a request line and on one header field, in bytes (its defaults).
MAX_FIELD_BYTES = 8190
#: A body read for ``stalled_after_seconds`` at under this average rate (bytes per second) has
#: stalled. A real client sends an agent's registration with its head and a review at network
#: speed (the API server's 3 MiB is over 16 KiB/s on any link it uses); a trickle is far below.
MIN_BODY_BYTES_PER_SECOND = 16 * 1024


@dataclass(frozen=True)
class GuardLimits:
    """Limits of :class:`ConnectionGuard`.

    Attributes:
        head_timeout_seconds: seconds a request's head may take to arrive whole (> 0).
        max_incomplete: connections at once that have not sent a whole request (>= 1).
        stalled_after_seconds: a head waiting at least this long counts as stalled (services
            use 1 s, or a quarter of the head timeout when shorter); only a stalled head is
            closed to make room, and a newcomer is never refused for heads that have not: a
            burst of real clients (a fleet re-registering after a restart) arrives faster than
            the event loop reads it, and the first answer StreamSpace's agent gets must not be
            a 503 (it exits).
    """

    head_timeout_seconds: float = 10.0
    max_incomplete: int = 256
    stalled_after_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.head_timeout_seconds <= 0:
            raise ValueError("head_timeout_seconds must be > 0")
        if self.max_incomplete < 1:
            raise ValueError("max_incomplete must be >= 1")
        if self.stalled_after_seconds < 0:
            raise ValueError("stalled_after_seconds must be >= 0")


def stalled_after(head_timeout_seconds: float) -> float:
    """The services' ``stalled_after_seconds``: 1 s, or a quarter of a shorter head timeout
    (a head must count as stalled well before its 408)."""
    return min(1.0, head_timeout_seconds / 4)


@dataclass
class GuardCounts:
    """What the guard has done since start (for tests, logs and metrics)."""

    head_timeouts: int = 0
    #: stalled heads closed to make room
    evicted: int = 0
    #: trickled bodies closed to make room
    evicted_bodies: int = 0
    malformed: int = 0


def _raw_answer(status: int, reason: str, error: str, message: str, *, retry: bool) -> bytes:
    body = jsonio.dumps({"error": error, "message": message})
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if retry:
        head.append("Retry-After: 1")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


class ConnectionGuard:
    """The incomplete connections of one server, oldest head first (module docstring)."""

    def report(self, status: int, error: str, message: str) -> None:
        """Tell :attr:`on_refusal` of one refusal; its failure never affects the answer."""
        if self.on_refusal is None:
            return
        try:
            self.on_refusal(status, error, message)
        except Exception:
            log.exception("on_refusal failed")

    def __init__(
        self, limits: GuardLimits, *, on_refusal: Callable[[int, str, str], None] | None = None
    ) -> None:
        self.limits = limits
        self.counts = GuardCounts()
        #: Told ``(status, error code, message)`` of every answer the guard gives itself (408,
        #: 503, 431, 400), so a service can count and audit refusals made before any request
        #: existed. Never given a byte of what the client sent.
        self.on_refusal = on_refusal
        # Connections waiting for a head, in the order their wait began; then those reading a
        # body, in the order their body began. Both count against max_incomplete.
        self._heads: OrderedDict[GuardedRequestHandler, float] = OrderedDict()
        self._bodies: OrderedDict[GuardedRequestHandler, float] = OrderedDict()

    @property
    def incomplete(self) -> int:
        """Connections that have not sent a whole request."""
        return len(self._heads) + len(self._bodies)

    def waiting_for_head(self, handler: GuardedRequestHandler) -> None:
        """Count ``handler`` as waiting for a head, first closing stalled connections, oldest
        first, while the cap is reached (module docstring). A newcomer is never refused."""
        self._bodies.pop(handler, None)
        if handler in self._heads:
            return
        now = time.monotonic()
        while self.incomplete >= self.limits.max_incomplete:
            victim = self._stalled_head(now)
            if victim is not None:
                self.counts.evicted += 1
            else:
                victim = self._stalled_body(now)
                if victim is None:
                    break  # nothing has stalled: a burst; let it in over the cap
                self.counts.evicted_bodies += 1
            victim.refuse_busy()  # takes it out of _heads or _bodies
        self._heads[handler] = now

    def _stalled_head(self, now: float) -> GuardedRequestHandler | None:
        if not self._heads:
            return None
        oldest, since = next(iter(self._heads.items()))
        return oldest if now - since >= self.limits.stalled_after_seconds else None

    def _stalled_body(self, now: float) -> GuardedRequestHandler | None:
        """The oldest body read for ``stalled_after_seconds`` at under
        :data:`MIN_BODY_BYTES_PER_SECOND` on average, or None."""
        for handler, since in self._bodies.items():
            elapsed = now - since
            if elapsed < self.limits.stalled_after_seconds:
                return None  # the rest began later still
            if handler.body_bytes < MIN_BODY_BYTES_PER_SECOND * elapsed:
                return handler
        return None

    def reading_body(self, handler: GuardedRequestHandler) -> None:
        self._heads.pop(handler, None)
        self._bodies[handler] = time.monotonic()

    def complete(self, handler: GuardedRequestHandler) -> None:
        self._heads.pop(handler, None)
        self._bodies.pop(handler, None)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's protocol with the guard's rules (module docstring). Built by
    :class:`GuardedServer`."""

    def __init__(self, manager: GuardedServer, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._head_deadline: asyncio.TimerHandle | None = None
        # "head": waiting for a request's head; "body": its body; "idle": between requests;
        # "upgraded": a WebSocket (never the guard's again).
        self._stage = "idle"
        #: Requests of this connection being handled (a pipelined head waits behind them).
        self.handling = 0
        #: The body of the request being read (None: none).
        self._body_payload: StreamReader | None = None

    @property
    def body_bytes(self) -> int:
        """Bytes of the current request's body received so far (0: none being read)."""
        return self._body_payload.total_bytes if self._body_payload is not None else 0

    # -- the connection's stages ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._wait_for_head()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_deadline()
        self._guard.complete(self)
        self._stage = "closed"
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and self._stage == "idle":
            self._wait_for_head()
        super().data_received(data)

    def head_received(self, message: RawRequestMessage, payload: StreamReader) -> None:
        """A request's head arrived whole: stop its deadline; the connection stays incomplete
        until ``payload`` reaches its end."""
        self._cancel_deadline()
        if self._stage == "closed":
            return
        if message.upgrade:
            self._stage = "upgraded"
            self._guard.complete(self)
            return
        if payload.is_eof():
            self._body_done()
            return
        self._stage = "body"
        self._body_payload = payload
        self._guard.reading_body(self)
        payload.on_eof(self._body_done)

    def _body_done(self) -> None:
        self._body_payload = None
        if self._stage in ("head", "body"):
            self._stage = "idle"
            self._guard.complete(self)

    def _wait_for_head(self) -> None:
        if self._stage in ("upgraded", "closed"):
            return
        self._stage = "head"
        self._guard.waiting_for_head(self)
        self._arm_deadline()

    def _arm_deadline(self) -> None:
        self._cancel_deadline()
        self._head_deadline = self._loop.call_later(
            self._guard.limits.head_timeout_seconds, self._head_timed_out
        )

    def _cancel_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self._stage != "head":
            return
        if self.handling:
            # A pipelined head waits behind a request still being handled: not the client's
            # delay. Look again later.
            self._arm_deadline()
            return
        self._guard.counts.head_timeouts += 1
        seconds = self._guard.limits.head_timeout_seconds
        self._refuse(
            408,
            "Request Timeout",
            "request_timeout",
            f"the request's head did not arrive within {seconds:g} s",
            retry=False,
        )

    def refuse_busy(self) -> None:
        """Close this connection, a stalled head or a trickled body, with 503 (the cap was
        reached and it has stalled longest). A body's handler then reads a
        ``ConnectionResetError``; its answer goes nowhere."""
        self._refuse(
            503,
            "Service Unavailable",
            "too_many_incomplete_requests",
            "too many connections have not sent a whole request; retry",
            retry=True,
        )

    def _refuse(self, status: int, reason: str, error: str, message: str, *, retry: bool) -> None:
        self._guard.report(status, error, message)
        self._answer_and_close(_raw_answer(status, reason, error, message, retry=retry))

    def _answer_and_close(self, answer: bytes) -> None:
        # Only while no request of this connection is being answered: nothing else writes.
        self._cancel_deadline()
        self._guard.complete(self)
        self._stage = "closed"
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(answer)
        self.force_close()

    # -- answers to what cannot be parsed ------------------------------------------------

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request aiohttp's parser refused gets JSON without its bytes (module docstring);
        every other error is aiohttp's."""
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        self._guard.counts.malformed += 1
        if isinstance(exc, LineTooLong) or (
            isinstance(exc, BadHttpMessage) and "too many headers" in str(exc.message).lower()
        ):
            status, error = 431, "request_header_fields_too_large"
            text = (
                f"the request line or a header field is over {MAX_FIELD_BYTES} bytes, or there "
                "are too many header fields; nothing of it is echoed"
            )
        else:
            status, error = 400, "malformed_http_request"
            text = f"the request is not valid HTTP/1.1 ({type(exc).__name__})"
        self._guard.report(status, error, text)
        # DEBUG: anyone can send these, one line each would be a flood (1,001 lines in 1.8 s
        # from one client in a trial); the services log or audit the refusal, sampled, and
        # count it, through report() above.
        log.debug(
            "refused an unparseable HTTP request from %s: %d %s (%s; content withheld)",
            request.remote,
            status,
            error,
            type(exc).__name__,
        )
        response = web.Response(
            status=status,
            body=jsonio.dumps({"error": error, "message": text}),
            content_type="application/json",
        )
        response.force_close()
        return response


class GuardedServer(web.Server):
    """:class:`aiohttp.web.Server` whose connections are :class:`GuardedRequestHandler`.

    Args:
        handler: the request handler (as :class:`aiohttp.web.Server`).
        guard: the :class:`ConnectionGuard` of this server.
        request_factory: as :class:`aiohttp.web.Server`; wrapped to tell the protocol when a
            head has arrived.
        **kwargs: as :class:`aiohttp.web.Server` (``access_log``, ``lingering_time``, ...).
    """

    def __init__(
        self,
        handler: Any,
        *,
        guard: ConnectionGuard,
        request_factory: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.guard = guard
        inner_factory = request_factory or self._make_request
        inner_handler = self.request_handler

        def make(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: RequestHandler,
            writer: Any,
            task: Any,
        ) -> web.BaseRequest:
            if isinstance(protocol, GuardedRequestHandler) and isinstance(
                message, RawRequestMessage
            ):
                protocol.head_received(message, payload)
            return inner_factory(message, payload, protocol, writer, task)

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            protocol = request.protocol
            if not isinstance(protocol, GuardedRequestHandler):
                return await inner_handler(request)
            protocol.handling += 1
            try:
                return await inner_handler(request)
            finally:
                protocol.handling -= 1

        self.request_factory = make
        self.request_handler = handle

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, guard=self.guard, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """:class:`aiohttp.web.AppRunner` serving its application through :class:`GuardedServer`.

    ``kwargs`` go to :class:`aiohttp.web.Server` as with :class:`aiohttp.web.AppRunner`.
    """

    def __init__(self, app: web.Application, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        # AppRunner's own steps (start the application, then build its server), with the
        # server built as a GuardedServer from the same parts.
        server = await super()._make_server()
        return GuardedServer(
            server.request_handler,
            guard=self.guard,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            **self._kwargs,
        )
