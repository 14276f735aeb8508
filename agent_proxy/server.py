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

from agent_proxy.enroll import KEY_HEADER, Enrollment
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


#: What a handshake that refuses the client certificate looks like from here: an alert during
#: the handshake (TLS 1.2), or the connection closed on the first read after it (TLS 1.3).
_REFUSED = (aiohttp.ClientSSLError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


async def _with_certificate(
    enrollment: Enrollment, send: Callable[[ssl.SSLContext], Awaitable[_T]]
) -> _T:
    """``send`` with the certificate; when that fails at the connection and the same without
    it does not, the certificate is what the approver refuses (its CA left the trust bundle):
    drop it (the next registration enrolls anew). When both fail, the approver is unreachable
    and the certificate is kept."""
    try:
        return await send(enrollment.context)
    except _REFUSED:
        result = await send(enrollment.trust)
        enrollment.discard()
        return result


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
        if exc.status == 403 and enrollment.held is not None:
            # A certificate the gate no longer takes (revoked, superseded): presenting it again
            # would be refused again; the agent's reconnect re-registers, which enrolls anew.
            enrollment.discard()
        return _json_error(exc.status, "approver_refused", f"the approver answered {exc.status}")
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
