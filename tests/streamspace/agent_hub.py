"""StreamSpace's agent WebSocket hub, for the control-plane stand-in.

Sources (streamspace-dev/streamspace @ c4fc035):

* ``api/internal/handlers/agent_websocket.go``: ``readPump`` (read deadline ``pongWait`` 60 s,
  renewed by pongs and by pings, which it answers; messages decoded as ``models.AgentMessage``,
  heartbeats handled by ``handleHeartbeat``; the read limit ``maxMessageSize`` 512 KiB) and
  ``writePump`` (a ping every ``pingPeriod`` = ``pongWait * 9 / 10``; a write error closes the
  connection). When ``readPump`` ends it calls ``AgentHub.UnregisterAgent``.
* ``api/internal/websocket/agent_hub.go``: ``handleRegister`` (an older connection of the same
  agent id is closed; the row goes ``online``), ``handleUnregister`` (*by agent id*: whichever
  connection holds the id now is closed; the row goes ``offline``), ``UpdateAgentHeartbeat``
  (``LastPing``; the row ``online`` with ``last_heartbeat``) and ``checkStaleConnections`` (every
  10 s, agents whose ``LastPing`` is more than 45 s old are unregistered).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from tests.streamspace.gojson import GoJSONError, decode_struct, unmarshal
from tests.streamspace.models import AGENT_MESSAGE, HEARTBEAT_MESSAGE, AgentRow, stored_capacity

#: ``agent_websocket.go``: ``pongWait`` and ``maxMessageSize``.
PONG_WAIT = 60.0
MAX_MESSAGE_SIZE = 512 * 1024
#: ``agent_hub.go`` ``Run``/``checkStaleConnections``: every 10 s, no heartbeat for > 45 s.
STALE_CHECK_INTERVAL = 10.0
STALE_AFTER = 45.0


@dataclass
class AgentTable:
    """The ``agents`` table (rows by ``agent_id``, in insertion order) and its one lock."""

    rows: dict[str, AgentRow] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class HubConnection:
    """``websocket.AgentConnection``: one agent's socket in the hub."""

    agent_id: str
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    platform: str
    last_ping: float
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def close(self) -> None:
        """``close(conn.Send)`` + ``conn.Conn.Close()``: the TCP connection is closed at once
        (the write pump's close frame usually loses that race in Go)."""
        self.closed.set()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class AgentHub:
    """``websocket.AgentHub`` with the pumps of ``AgentWebSocketHandler`` (module docstring).

    ``clock`` is the wall clock of ``LastPing`` and of the row timestamps; the pumps' deadlines
    and periods run on the event loop's clock.
    """

    def __init__(
        self,
        table: AgentTable,
        clock: Callable[[], float],
        *,
        pong_wait: float = PONG_WAIT,
        ping_period: float | None = None,
        stale_after: float = STALE_AFTER,
        stale_check_interval: float = STALE_CHECK_INTERVAL,
    ) -> None:
        self._table = table
        self._clock = clock
        self._pong_wait = pong_wait
        self._ping_period = ping_period if ping_period is not None else pong_wait * 9 / 10
        self._stale_after = stale_after
        self._stale_check_interval = stale_check_interval
        self._connections: dict[str, HubConnection] = {}
        self._serving: set[asyncio.Task[Any]] = set()
        self._stale_task: asyncio.Task[None] | None = None
        #: While set, connections end without the unregister UPDATE (the process is gone).
        self.down = False
        #: JSON object messages received, by agent id.
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self._messages_changed = asyncio.Condition()

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """``go agentHub.Run()``: the stale-connection ticker."""
        self._stale_task = asyncio.create_task(self._stale_check_loop())

    async def stop(self) -> None:
        """Stop the ticker."""
        if self._stale_task is not None:
            self._stale_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stale_task
            self._stale_task = None

    def close_all(self) -> None:
        """Close every connection and forget it, with no database write (the process is
        going away)."""
        for conn in list(self._connections.values()):
            conn.close()
        self._connections.clear()

    async def wait_idle(self) -> None:
        """Wait (up to 5 s) for the connections' handlers to end."""
        if self._serving:
            await asyncio.wait(set(self._serving), timeout=5.0)

    # --- introspection ---------------------------------------------------------------------------

    def connected(self) -> set[str]:
        """``GetConnectedAgents``."""
        return set(self._connections)

    async def received_messages(
        self,
        agent_id: str,
        *,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - a test helper's own deadline
    ) -> list[dict[str, Any]]:
        """The JSON messages received from ``agent_id`` once there are ``count`` of them."""
        async with asyncio.timeout(timeout), self._messages_changed:
            await self._messages_changed.wait_for(
                lambda: len(self.messages.get(agent_id, [])) >= count
            )
            return list(self.messages.get(agent_id, []))

    # --- serving ---------------------------------------------------------------------------------

    async def serve(
        self, agent_id: str, ws: web.WebSocketResponse, transport: asyncio.Transport | None,
        platform: str,
    ) -> None:  # fmt: skip
        """``HandleAgentConnection`` after the upgrade: ``RegisterAgent`` to the hub, the pumps,
        and ``UnregisterAgent`` when the read pump ends."""
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        conn = HubConnection(agent_id, ws, transport, platform, self._clock())
        try:
            await self._register(conn)
            writer = asyncio.create_task(self._write_pump(conn))
            try:
                await self._read_pump(conn)
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
        finally:
            self._serving.discard(task)
            await self.unregister(agent_id)
            conn.close()

    async def _write_pump(self, conn: HubConnection) -> None:
        """``writePump``: a ping every ``pingPeriod``; a failed write closes the connection."""
        while not conn.closed.is_set():
            await asyncio.sleep(self._ping_period)
            try:
                await conn.ws.ping()
            except Exception:
                conn.close()
                return

    async def _read_pump(self, conn: HubConnection) -> None:
        """``readPump``: until a read error, a close or the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._pong_wait
        ws = conn.ws
        while True:
            try:
                msg = await ws.receive(timeout=max(0.0, deadline - loop.time()))
            except Exception:  # the deadline, or any read error
                return
            if msg.type == WSMsgType.PING:  # SetPingHandler: renew, answer
                deadline = loop.time() + self._pong_wait
                with contextlib.suppress(Exception):
                    await ws.pong(msg.data)
                continue
            if msg.type == WSMsgType.PONG:  # SetPongHandler: renew
                deadline = loop.time() + self._pong_wait
                continue
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await self._on_message(conn, msg.data)
                continue
            return  # CLOSE, CLOSING, CLOSED, ERROR (e.g. over maxMessageSize)

    async def _on_message(self, conn: HubConnection, data: str | bytes) -> None:
        """Keep a JSON object message, then ``readPump``'s switch on ``AgentMessage.Type``
        (only ``heartbeat`` changes anything here; an undecodable message is skipped)."""
        raw = data.encode() if isinstance(data, str) else data
        try:
            plain = json.loads(raw)
        except ValueError:
            plain = None
        if isinstance(plain, dict):
            async with self._messages_changed:
                self.messages.setdefault(conn.agent_id, []).append(plain)
                self._messages_changed.notify_all()
        try:
            message = decode_struct(unmarshal(raw), AGENT_MESSAGE)
        except GoJSONError:
            return  # "Invalid message from agent"
        if message.get("type", "") != "heartbeat" or "payload" not in message:
            return  # other types; or json.Unmarshal(nil payload): "Invalid heartbeat"
        try:
            heartbeat = decode_struct(message["payload"], HEARTBEAT_MESSAGE)
        except GoJSONError:
            return
        await self._heartbeat(conn.agent_id, heartbeat)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), tz=UTC)

    async def _heartbeat(self, agent_id: str, heartbeat: dict[str, Any]) -> None:
        """``handleHeartbeat``: ``UpdateAgentHeartbeat`` then the capacity if one was sent."""
        conn = self._connections.get(agent_id)
        if conn is None:
            return
        conn.last_ping = self._clock()
        now = self._now()
        async with self._table.lock:
            row = self._table.rows.get(agent_id)
            if row is not None:
                row.status = "online"
                row.last_heartbeat = now
                row.updated_at = now
                if "capacity" in heartbeat:
                    row.capacity = stored_capacity(heartbeat["capacity"])

    async def _register(self, conn: HubConnection) -> None:
        """``handleRegister``."""
        existing = self._connections.get(conn.agent_id)
        if existing is not None:
            existing.close()
        self._connections[conn.agent_id] = conn
        now = self._now()
        async with self._table.lock:
            row = self._table.rows.get(conn.agent_id)
            if row is not None:
                row.status = "online"
                row.last_heartbeat = now
                row.updated_at = now

    async def unregister(self, agent_id: str) -> None:
        """``handleUnregister``: by agent id, so the read pump of a connection replaced by a
        newer one unregisters (and closes) the newer one; the row goes ``offline``."""
        if self.down:
            return
        conn = self._connections.pop(agent_id, None)
        if conn is None:
            return
        conn.close()
        now = self._now()
        async with self._table.lock:
            row = self._table.rows.get(agent_id)
            if row is not None:
                row.status = "offline"
                row.updated_at = now

    async def _stale_check_loop(self) -> None:
        """``Run``'s ticker: ``checkStaleConnections``."""
        while True:
            await asyncio.sleep(self._stale_check_interval)
            now = self._clock()
            stale = [
                agent_id
                for agent_id, conn in self._connections.items()
                if now - conn.last_ping > self._stale_after
            ]
            for agent_id in stale:
                await self.unregister(agent_id)
