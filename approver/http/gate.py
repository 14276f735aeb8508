"""The agent gate's HTTP side: StreamSpace's agent paths, authorized (:mod:`approver.gate`)
and forwarded to the control plane.

* ``GET /api/v1/agents/connect?agent_id=<id>`` (WebSocket): the agent's key must be its current
  one for that id; the approver then opens the same WebSocket to the control plane with the same
  ``X-Agent-API-Key`` (plus ``X-Forwarded-For``: the agent's address) and relays every frame both
  ways, pings, pongs and close codes included, until either side closes. A handshake the control
  plane refuses is answered with its status; an unreachable control plane with 502.
* ``POST /api/v1/agents/{agent_id}/heartbeat``: authorized the same way, forwarded as is, the
  control plane's answer returned.

Refusals are JSON ``{"error", "message"}`` (401 ``missing_api_key``, 403 ``invalid_api_key`` or
``agent_not_active``, 400 ``invalid_agent_id``; with agent certificates 401
``client_certificate_required``, 403 ``certificate_agent_mismatch``, ``certificate_not_live``),
the code also in the ``X-Agent-Bootstrap-Error`` header (a WebSocket client sees only headers),
and audit lines (``agent.connect`` / ``agent.heartbeat``, not stored: a flood of refused
connects must not grow the database). An accepted connect is an audit line too.

:class:`GateConnections` keeps the open relays; every ``controlPlane.gateRecheckSeconds`` each is
checked again and closed (1008, "credential revoked") once the agent is no longer active or its
key was replaced; at shutdown every relay is closed (1001).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp
from aiohttp import WSCloseCode, web

from approver.connectors.streamspace import CONNECT_PATH, KEY_HEADER
from approver.domain.control_plane import Upstream
from approver.domain.requests import BadRequest, check_agent_id
from approver.gate import AgentGate, GatePass, GateRefusal
from approver.http.app_keys import AUDIT_KEY
from approver.http.certificates import peer_certificate
from approver.http.common import json_error
from bootstrap_token import AuditEvent, fingerprint, ws_relay

log = logging.getLogger(__name__)

#: Largest WebSocket message relayed, in bytes (StreamSpace's ``maxMessageSize`` is 512 KiB).
MAX_MESSAGE_BYTES = 1024 * 1024
HEARTBEAT_PATH = "/api/v1/agents/{agent_id}/heartbeat"
#: Response header carrying a refusal's ``error`` code.
ERROR_HEADER = "X-Agent-Bootstrap-Error"


@dataclass(eq=False)
class Relay:
    """One open agent WebSocket and its upstream twin."""

    agent_id: str
    key_digest: str
    agent: web.WebSocketResponse
    upstream: aiohttp.ClientWebSocketResponse
    #: The serial of the client certificate the agent connected with, if any.
    serial: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def close(self, code: int, message: bytes) -> None:
        """Close both sides (idempotent)."""
        for side in (self.agent, self.upstream):
            with contextlib.suppress(Exception):
                await side.close(code=code, message=message)
        self.done.set()


class GateConnections:
    """The open relays, checked again on a period (module docstring)."""

    def __init__(self, gate: AgentGate, *, recheck_seconds: float) -> None:
        self._gate = gate
        self._period = recheck_seconds
        self.relays: set[Relay] = set()

    def __len__(self) -> int:
        return len(self.relays)

    async def recheck(self) -> int:
        """Close the relays whose key no longer authorizes them; returns how many."""
        closed = 0
        for relay in list(self.relays):
            try:
                ok = await self._gate.still_authorized(
                    relay.agent_id, relay.key_digest, relay.serial
                )
            except Exception as exc:
                log.warning("gate recheck: %s", exc)
                return closed
            if not ok:
                await relay.close(WSCloseCode.POLICY_VIOLATION, b"credential revoked")
                closed += 1
        return closed

    async def run(self) -> None:
        """Recheck forever (a background task)."""
        while True:
            await asyncio.sleep(self._period)
            await self.recheck()

    async def close_all(self) -> None:
        for relay in list(self.relays):
            await relay.close(WSCloseCode.GOING_AWAY, b"approver shutting down")


GATE_KEY = web.AppKey("agent_gate", AgentGate)
CONNECTIONS_KEY = web.AppKey("gate_connections", GateConnections)
UPSTREAM_KEY = web.AppKey("gate_upstream", Upstream)
SESSION_KEY = web.AppKey("gate_session", aiohttp.ClientSession)


def _audit(
    request: web.Request,
    *,
    event: str,
    decision: str,
    reason: str,
    agent_id: str | None,
    key: str | None,
    security: bool = False,
    message: str | None = None,
) -> None:
    request.app[AUDIT_KEY].emit(
        AuditEvent(
            time=datetime.now(UTC),
            component="approver",
            event=event,
            decision=decision,
            reason=reason,
            security=security,
            agent_id=agent_id,
            credential=fingerprint(key) if key else None,
            message=message,
        )
    )


async def _authorize(
    request: web.Request, agent_id: str, *, event: str
) -> tuple[str, GatePass] | web.Response:
    """``(key, pass)`` of an authorized request, or the refusal to answer."""
    key = request.headers.get(KEY_HEADER, "").strip() or None
    try:
        check_agent_id(agent_id, where="agent_id")
        granted = await request.app[GATE_KEY].authorize(
            agent_id=agent_id, api_key=key, certificate=peer_certificate(request)
        )
    except BadRequest as exc:
        _audit(request, event=event, decision="invalid", reason=exc.code, agent_id=None, key=key)
        return json_error(400, exc.code, exc.message)
    except GateRefusal as exc:
        _audit(
            request,
            event=event,
            decision="refused",
            reason=exc.code,
            agent_id=agent_id,
            key=key,
            security=exc.security,
            message=exc.message,
        )
        refused = json_error(exc.status, exc.code, exc.message)
        # The code as a header too: a WebSocket client sees the handshake's headers, not its
        # body (the agent proxy tells a refused certificate from a refused key by it).
        refused.headers[ERROR_HEADER] = exc.code
        return refused
    assert key is not None
    return key, granted


def _upstream_headers(request: web.Request, key: str) -> dict[str, str]:
    headers = {KEY_HEADER: key}
    if request.remote:
        headers["X-Forwarded-For"] = request.remote
    return headers


async def connect(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/agents/connect?agent_id=...``: authorize, then relay (module docstring)."""
    agent_id = request.query.get("agent_id", "")
    allowed = await _authorize(request, agent_id, event="agent.connect")
    if isinstance(allowed, web.Response):
        return allowed
    key, granted = allowed
    agent = web.WebSocketResponse(autoping=False, max_msg_size=MAX_MESSAGE_BYTES)
    if not agent.can_prepare(request).ok:
        # Not a WebSocket handshake: never dial the control plane for it (a dial would open,
        # and StreamSpace's hub would replace, the agent's live connection there).
        return json_error(400, "not_a_websocket", "a WebSocket upgrade is required")
    upstream = request.app[UPSTREAM_KEY]
    url = f"{upstream.base_url}{CONNECT_PATH}?agent_id={quote(agent_id, safe='')}"
    try:
        remote = await request.app[SESSION_KEY].ws_connect(
            url,
            headers=_upstream_headers(request, key),
            autoping=False,
            max_msg_size=MAX_MESSAGE_BYTES,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
        )
    except aiohttp.WSServerHandshakeError as exc:
        _audit(
            request, event="agent.connect", decision="refused", reason="control_plane_refused",
            agent_id=agent_id, key=key, message=f"control plane answered {exc.status}",
        )  # fmt: skip
        return json_error(
            exc.status, "control_plane_refused", f"control plane answered {exc.status}"
        )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning("gate: control plane unreachable for a connect: %s", type(exc).__name__)
        return json_error(502, "control_plane_unavailable", "the control plane is unreachable")
    try:
        await agent.prepare(request)
    except (ConnectionResetError, RuntimeError, aiohttp.ClientError, OSError):
        # The agent went away during the handshake: never leave the upstream dial open.
        await remote.close()
        return agent
    relay = Relay(
        agent_id=agent_id,
        key_digest=granted.key_digest,
        agent=agent,
        upstream=remote,
        serial=granted.serial,
    )
    connections = request.app[CONNECTIONS_KEY]
    connections.relays.add(relay)
    _audit(
        request, event="agent.connect", decision="relayed", reason="ok", agent_id=agent_id,
        key=key, message=f"certificate serial={granted.serial}" if granted.serial else None,
    )  # fmt: skip
    try:
        await ws_relay.relay(relay.agent, relay.upstream, relay.done)
    finally:
        connections.relays.discard(relay)
        await relay.close(WSCloseCode.GOING_AWAY, b"")
    return agent


async def heartbeat(request: web.Request) -> web.StreamResponse:
    """``POST /api/v1/agents/{agent_id}/heartbeat``: authorize, forward, answer as answered."""
    agent_id = request.match_info["agent_id"]
    allowed = await _authorize(request, agent_id, event="agent.heartbeat")
    if isinstance(allowed, web.Response):
        return allowed
    key, _ = allowed
    upstream = request.app[UPSTREAM_KEY]
    headers = _upstream_headers(request, key)
    headers["Content-Type"] = request.headers.get("Content-Type", "application/json")
    try:
        async with request.app[SESSION_KEY].post(
            f"{upstream.base_url}/api/v1/agents/{quote(agent_id, safe='')}/heartbeat",
            data=await request.read(),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as answer:
            body = await answer.read()
            return web.Response(
                status=answer.status,
                body=body,
                content_type=answer.content_type or "application/json",
            )
    except (aiohttp.ClientError, TimeoutError, OSError):
        return json_error(502, "control_plane_unavailable", "the control plane is unreachable")


def add_routes(app: web.Application) -> None:
    app.router.add_get(CONNECT_PATH, connect)
    app.router.add_post(HEARTBEAT_PATH, heartbeat)
