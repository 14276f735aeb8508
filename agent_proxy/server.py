"""The proxy's HTTP side: what the agent talks to, on the pod's loopback.

* ``POST /api/v1/agents/register``: forwarded to the approver as it came (body, the agent's
  ``X-Agent-API-Key`` and ``Content-Type``), its answer returned as it came. An approved answer
  (200/201 with ``apiKey`` and ``agentId``) gives the proxy the agent's key, and the proxy
  obtains the certificate before it answers: the agent's next step is its WebSocket.
* ``GET /api/v1/agents/connect?agent_id=...`` (WebSocket): the same WebSocket opened to the
  approver with the agent's key and, in the TLS handshake, its certificate; frames relayed both
  ways (:mod:`bootstrap_token.ws_relay`). A handshake the approver refuses is answered with its
  status (a 403 also drops the certificate: the agent's reconnect registers again, and that
  enrolls anew with the key); an unreachable approver with 502.
* ``POST /api/v1/agents/{agentId}/heartbeat``: forwarded with the certificate.
* Anything else: 404. The proxy is not a general forward proxy.

Nothing here logs or answers with the agent's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from aiohttp import WSCloseCode, web

from agent_proxy.enroll import KEY_HEADER, REFUSED, Enrollment
from bootstrap_token.ws_relay import relay

log = logging.getLogger(__name__)
_T = TypeVar("_T")

REGISTER_PATH = "/api/v1/agents/register"
CONNECT_PATH = "/api/v1/agents/connect"
HEARTBEAT_PATH = "/api/v1/agents/{agent_id}/heartbeat"
#: StreamSpace's hub reads at most 512 KiB per message; the approver relays up to 1 MiB.
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_BODY_BYTES = 64 * 1024

ENROLLMENT_KEY = web.AppKey("enrollment", Enrollment)
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM_KEY = web.AppKey("upstream", str)
RELAYS_KEY: web.AppKey[set[asyncio.Event]] = web.AppKey("relays")


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _forward_headers(request: web.Request) -> dict[str, str]:
    headers = {}
    key = request.headers.get(KEY_HEADER)
    if key:
        headers[KEY_HEADER] = key
    if request.content_type:
        headers["Content-Type"] = request.headers.get("Content-Type", "application/json")
    return headers


async def _forward(request: web.Request, path: str, *, certificate: bool) -> web.Response:
    """POST the request's body to the approver's ``path`` (with the certificate when asked and
    held) and answer as it answered, its ``Retry-After`` included.

    A certificate refused in the handshake (its CA left the approver's trust bundle) is
    dropped and the request sent again without it: the agent's next registration enrolls anew.

    Raises:
        aiohttp.ClientError, TimeoutError, OSError: the approver is unreachable.
    """
    enrollment = request.app[ENROLLMENT_KEY]
    body = await request.read()

    async def send(context: ssl.SSLContext) -> web.Response:
        async with request.app[SESSION_KEY].post(
            request.app[UPSTREAM_KEY] + path,
            data=body,
            headers=_forward_headers(request),
            ssl=context,
            timeout=aiohttp.ClientTimeout(total=15),
        ) as answer:
            response = web.Response(
                status=answer.status,
                body=await answer.read(),
                content_type=answer.content_type or "application/json",
            )
            if "Retry-After" in answer.headers:
                response.headers["Retry-After"] = answer.headers["Retry-After"]
            return response

    if not certificate or enrollment.held is None:
        return await send(enrollment.trust)
    return await _with_certificate(enrollment, send)


#: The gate's refusals that are about the certificate (approver/http/gate.py).
CERTIFICATE_REFUSALS = frozenset({"certificate_not_live", "certificate_agent_mismatch"})
ERROR_HEADER = "X-Agent-Bootstrap-Error"


async def _with_certificate(
    enrollment: Enrollment, send: Callable[[ssl.SSLContext], Awaitable[_T]]
) -> _T:
    """``send`` with the certificate. When that fails at the connection, the approver may be
    restarting, or it may refuse the certificate in the handshake (its CA left the trust
    bundle): :meth:`Enrollment.certificate_refused` tells them apart with two side-effect-free
    probes, and only a refused certificate is dropped (the next registration enrolls anew).
    The request is then sent once more, with the certificate if it is kept."""
    try:
        return await send(enrollment.context)
    except REFUSED:
        if await enrollment.certificate_refused():
            enrollment.discard()
        return await send(enrollment.context)


async def register(request: web.Request) -> web.StreamResponse:
    """``POST /api/v1/agents/register`` (module docstring)."""
    try:
        # No certificate: a registration needs none, and one the approver no longer takes
        # must not keep the agent from registering.
        answer = await _forward(request, REGISTER_PATH, certificate=False)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return _json_error(502, "approver_unavailable", "the approver is unreachable")
    if answer.status in (200, 201) and isinstance(answer.body, bytes):
        _learn(request.app[ENROLLMENT_KEY], answer.body)
        await request.app[ENROLLMENT_KEY].ensure()
    return answer


def _learn(enrollment: Enrollment, body: bytes) -> None:
    try:
        answer: Any = json.loads(body)
    except ValueError:
        return
    if not isinstance(answer, dict):
        return
    key, agent_id = answer.get("apiKey"), answer.get("agentId")
    if isinstance(key, str) and key and isinstance(agent_id, str) and agent_id:
        enrollment.learn(agent_id=agent_id, api_key=key)


async def heartbeat(request: web.Request) -> web.StreamResponse:
    """``POST /api/v1/agents/{agentId}/heartbeat``: forwarded with the certificate."""
    path = HEARTBEAT_PATH.format(agent_id=quote(request.match_info["agent_id"], safe=""))
    try:
        return await _forward(request, path, certificate=True)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return _json_error(502, "approver_unavailable", "the approver is unreachable")


async def connect(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/agents/connect``: a WebSocket to the approver with the certificate."""
    agent = web.WebSocketResponse(autoping=False, max_msg_size=MAX_MESSAGE_BYTES)
    if not agent.can_prepare(request).ok:
        return _json_error(400, "not_a_websocket", "a WebSocket upgrade is required")
    enrollment = request.app[ENROLLMENT_KEY]
    url = request.app[UPSTREAM_KEY].replace("https://", "wss://", 1) + CONNECT_PATH

    async def dial(context: ssl.SSLContext) -> aiohttp.ClientWebSocketResponse:
        return await request.app[SESSION_KEY].ws_connect(
            url,
            params=request.query,
            headers={KEY_HEADER: request.headers.get(KEY_HEADER, "")},
            ssl=context,
            autoping=False,
            max_msg_size=MAX_MESSAGE_BYTES,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
        )

    try:
        if enrollment.held is None:
            upstream = await dial(enrollment.trust)
        else:
            upstream = await _with_certificate(enrollment, dial)
    except aiohttp.WSServerHandshakeError as exc:
        refusal = exc.headers.get(ERROR_HEADER) if exc.headers else None
        if refusal in CERTIFICATE_REFUSALS and enrollment.held is not None:
            # A certificate the gate no longer takes (revoked, superseded, another agent's):
            # presenting it again would be refused again; the agent's reconnect re-registers,
            # which enrolls anew. Any other refusal (the key, the agent) keeps it.
            enrollment.discard()
        answer = _json_error(
            exc.status, refusal or "approver_refused", f"the approver answered {exc.status}"
        )
        for name in ("Retry-After", ERROR_HEADER):
            if exc.headers and name in exc.headers:
                answer.headers[name] = exc.headers[name]
        return answer
    except (aiohttp.ClientError, TimeoutError, OSError):
        return _json_error(502, "approver_unavailable", "the approver is unreachable")
    try:
        await agent.prepare(request)
    except (ConnectionResetError, RuntimeError, aiohttp.ClientError, OSError):
        await upstream.close()
        return agent
    done = asyncio.Event()
    relays = request.app[RELAYS_KEY]
    relays.add(done)
    try:
        await relay(agent, upstream, done)
    finally:
        relays.discard(done)
        for side in (agent, upstream):
            with contextlib.suppress(Exception):
                await side.close(code=WSCloseCode.GOING_AWAY, message=b"")
    return agent


def create_app(
    enrollment: Enrollment, session: aiohttp.ClientSession, upstream: str
) -> web.Application:
    """The proxy's application (module docstring)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[ENROLLMENT_KEY] = enrollment
    app[SESSION_KEY] = session
    app[UPSTREAM_KEY] = upstream
    app[RELAYS_KEY] = set()
    app.router.add_post(REGISTER_PATH, register)
    app.router.add_get(CONNECT_PATH, connect)
    app.router.add_post(HEARTBEAT_PATH, heartbeat)

    async def close_relays(app: web.Application) -> None:
        relays = app[RELAYS_KEY]
        for done in list(relays):
            done.set()

    app.on_shutdown.append(close_relays)
    return app
