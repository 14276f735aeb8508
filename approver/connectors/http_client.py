"""A small JSON-over-HTTP client with a time budget: retries, backoff, a 429's ``retryAfter``.

Used by the control-plane adapters (:mod:`approver.connectors.streamspace`). One call runs
until it gets an answer that is not a transient failure, or until its deadline passes:

* connection errors, timeouts and 5xx answers are retried after an exponential backoff with
  jitter (50 ms doubling, at most 1 s);
* a 429 is retried after the wait the server asked for (``Retry-After``, or a JSON
  ``retryAfter`` as StreamSpace sends it) when that fits the deadline, else it ends the call
  with :class:`~approver.domain.control_plane.ControlPlaneUnavailable` carrying that wait;
* any other answer is returned, whatever its status: what it means is the adapter's business.

Nothing here logs a header value or a body: credentials travel in both.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from approver.domain.control_plane import ControlPlaneUnavailable
from bootstrap_token import jsonio

#: Statuses retried as transient (the server or something in front of it is in trouble).
_TRANSIENT = frozenset({500, 502, 503, 504})
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 1.0


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status and the decoded JSON object (None when the body is not one)."""

    status: int
    data: Mapping[str, Any] | None

    def get(self, key: str) -> Any:
        """A member of the JSON object, or None."""
        return self.data.get(key) if self.data is not None else None


def _retry_after(response: aiohttp.ClientResponse, data: Mapping[str, Any] | None) -> float:
    header = response.headers.get("Retry-After", "")
    if header.isascii() and header.isdigit():  # str.isdigit alone takes "²" (RFC 9110 10.2.3)
        return float(header)
    member = data.get("retryAfter") if data is not None else None
    if isinstance(member, int | float) and not isinstance(member, bool) and member >= 0:
        return float(member)
    return 1.0


class BudgetClient:
    """JSON calls against one base URL, each bounded by a deadline (module docstring).

    Args:
        base_url: ``scheme://host:port``.
        session: the aiohttp session (the caller closes it).
        request_timeout: most seconds one attempt may take.
        clock: monotonic seconds (``time.monotonic``).
        sleep: ``asyncio.sleep`` (tests pass a fake).
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession,
        request_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = request_timeout
        self._clock = clock
        self._sleep = sleep

    def deadline(self, budget: float) -> float:
        """The deadline ``budget`` seconds from now (for :meth:`call`)."""
        return self._clock() + budget

    async def call(
        self,
        method: str,
        path: str,
        *,
        deadline: float,
        what: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> Answer:
        """One call, retried as the module docstring says.

        Args:
            method, path: the request (``path`` starts with ``/``; it may hold a query).
            deadline: the monotonic time by which an answer must be in.
            what: how errors name the call (a route pattern, never a value).
            headers: extra headers (credentials included; never logged).
            body: raw JSON bytes to send, or ``json_body`` to encode.

        Returns:
            The first answer that is neither a transport failure, a 5xx nor a retried 429.

        Raises:
            ControlPlaneUnavailable: the deadline passed (the last failure named), or a 429
                asked for a wait past it (``retry_after`` set).
        """
        data = body if body is not None else (jsonio.dumps(json_body) if json_body else None)
        send_headers = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            send_headers["Content-Type"] = "application/json"
        backoff = _FIRST_BACKOFF
        last = "no attempt"
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ControlPlaneUnavailable(f"{what}: no answer within the budget ({last})")
            try:
                async with self._session.request(
                    method,
                    self.base_url + path,
                    data=data,
                    headers=send_headers,
                    timeout=aiohttp.ClientTimeout(total=min(self._timeout, remaining)),
                    allow_redirects=False,
                ) as response:
                    raw = await response.read()
                    decoded = _object(raw)
                    if response.status == 429:
                        wait = _retry_after(response, decoded)
                        if self._clock() + wait >= deadline:
                            raise ControlPlaneUnavailable(
                                f"{what}: rate limited (429), retry after {wait:g} s",
                                retry_after=wait,
                            )
                        await self._sleep(wait)
                        continue
                    if response.status not in _TRANSIENT:
                        return Answer(response.status, decoded)
                    last = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                last = type(exc).__name__
            pause = min(backoff, max(0.0, deadline - self._clock()))
            await self._sleep(pause * (0.5 + random.random() / 2))  # noqa: S311 - jitter
            backoff = min(backoff * 2, _MAX_BACKOFF)


def _object(raw: bytes) -> Mapping[str, Any] | None:
    if not raw:
        return None
    try:
        value = jsonio.loads(raw)
    except jsonio.InvalidJson:
        return None
    return value if isinstance(value, dict) else None
