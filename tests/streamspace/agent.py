"""A stand-in for StreamSpace's Kubernetes agent (``agents/k8s-agent``), for integration tests.

It does on the wire what the agent's unmodified code at streamspace-dev/streamspace @ c4fc035
does, without Kubernetes: each behaviour names the Go function it follows
(``agents/k8s-agent/main.go`` unless said otherwise).

* ``main``: ``AGENT_ID`` and ``CONTROL_PLANE_URL`` must be set (``log.Fatal``); the other settings
  come from the environment with ``getEnvOrDefault``/``getEnvIntOrDefault``;
  ``config.Validate`` (``internal/config/config.go``) wants ``AGENT_API_KEY``, turns a
  heartbeat interval <= 0 into 10 s and an empty backoff into ``[2, 4, 8, 16, 32]``.
  ``runStandalone``: ``Run`` failing is ``log.Fatalf`` (:class:`AgentExit` here).
* ``Run``: ``Connect`` (``registerAgent`` then ``connectWebSocket``), then ``SendHeartbeats``,
  ``readPump`` and ``writePump`` until stopped.
* ``registerAgent``: the exact JSON body (:meth:`K8sAgentStandIn.request_body`), Go's headers
  (``X-Agent-API-Key`` goes out as ``X-Agent-Api-Key``), a fresh 10 s ``http.Client``; any
  status but 200/201/202 fails, so does a body that does not decode. An answer saying
  ``approvalStatus: pending`` starts the wait: every 30 s (a ticker) it registers again; there a
  request error or an undecodable body is skipped, the status code is *not* looked at, and any
  decodable answer whose ``approvalStatus`` is neither ``pending`` nor ``rejected`` counts as
  approved (a 429's JSON included); ``rejected`` fails. An ``apiKey`` in the approved answer (or
  in a first 200/201) becomes the agent's key.
* ``connectWebSocket``: ``CONTROL_PLANE_URL`` + ``/api/v1/agents/connect?agent_id=`` (query-
  escaped), ``X-Agent-API-Key``, a 10 s handshake timeout; gorilla only dials ``ws``/``wss``.
* ``readPump``: a read deadline of ``pongWait`` renewed only by pongs; any read error runs
  ``Reconnect``: for each backoff, sleep then ``Connect`` again (registration with the *current*
  key, then the WebSocket); when all fail, the next read fails at once and ``Reconnect`` runs
  again (so it never gives up). The old socket is not closed.
* ``writePump``: the queued messages and a ping every ``pingPeriod``; the first write error ends
  it *for good* (no heartbeats nor pings afterwards, even once reconnected).
* ``sendHeartbeat``: ``{"payload": {"activeSessions": 0, "capacity": {...}, "status":
  "online"}, "timestamp": ..., "type": "heartbeat"}`` (a Go map: keys sorted).

Not reproduced: Kubernetes (sessions, commands' effects, VNC), leader election (``ENABLE_HA``),
and the ``--flag`` forms of the settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, urlsplit

import aiohttp
import yarl

from tests.streamspace.gojson import (
    GoJSONError,
    GoMap,
    Struct,
    decode_first,
    decode_struct,
    go_atoi,
    go_parse_duration_ns,
    marshal,
)

log = logging.getLogger(__name__)

__all__ = ["AgentExit", "AgentSettings", "K8sAgentStandIn", "convert_to_http_url"]

#: ``config.Validate``'s default ``ReconnectBackoff`` (seconds).
DEFAULT_BACKOFF = (2.0, 4.0, 8.0, 16.0, 32.0)
#: ``main.go`` constants: ``pongWait`` and ``pingPeriod = pongWait * 9 / 10``.
PONG_WAIT = 60.0
PING_PERIOD = PONG_WAIT * 9 / 10
#: ``sendMessage``: ``writeChan`` holds 256 messages, a send waits at most 5 s.
WRITE_QUEUE = 256
SEND_TIMEOUT = 5.0
#: Go's ``net/http`` client headers the agent does not set itself.
GO_USER_AGENT = "Go-http-client/1.1"

_AGENT_INNER = Struct(
    "",
    "struct { ID string; AgentID string; Platform string; Status string; CreatedAt time.Time }",
    {
        "id": "string",
        "agentId": "string",
        "platform": "string",
        "status": "string",
        "createdAt": "time",
    },
)
#: ``AgentRegistrationResponse``: what ``registerAgent`` decodes an answer into.
REGISTRATION_RESPONSE = Struct(
    "AgentRegistrationResponse",
    "main.AgentRegistrationResponse",
    {
        "agent": _AGENT_INNER,
        "id": "string",
        "agentId": "string",
        "platform": "string",
        "status": "string",
        "createdAt": "time",
        "apiKey": "string",
        "message": "string",
        "approvalStatus": "string",
    },
)


class AgentExit(Exception):
    """Where the Go agent would ``log.Fatal``/``log.Fatalf`` and exit; ``reason`` is its text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _ConnectError(Exception):
    """``Connect`` returned an error (its text as Go builds it)."""


class _RequestError(Exception):
    """``client.Do`` (or reading the body) failed."""


def get_env_or_default(env: Mapping[str, str], key: str, default: str) -> str:
    """``getEnvOrDefault``: unset or empty means the default."""
    return env.get(key) or default


def get_env_int_or_default(env: Mapping[str, str], key: str, default: int) -> int:
    """``getEnvIntOrDefault``: a Go duration (``"30s"`` is 30, ``"0"`` is 0) first, then an
    integer; anything else is the default."""
    value = env.get(key, "")
    if value == "":
        return default
    nanos = go_parse_duration_ns(value)
    if nanos is not None:
        return int(nanos / 1_000_000_000)  # int(duration.Seconds()): truncation toward zero
    number = go_atoi(value)
    return number if number is not None else default


def convert_to_http_url(ws_url: str) -> str:
    """``convertToHTTPURL``: ``wss`` -> ``https``, ``ws`` -> ``http`` (case-sensitive prefix)."""
    if len(ws_url) > 3 and ws_url.startswith("wss"):
        return "https" + ws_url[3:]
    if len(ws_url) > 2 and ws_url.startswith("ws"):
        return "http" + ws_url[2:]
    return ws_url


@dataclass(frozen=True)
class AgentSettings:
    """``config.AgentConfig`` as ``main`` fills it and ``Validate`` completes it."""

    agent_id: str
    control_plane_url: str
    api_key: str
    platform: str
    region: str
    namespace: str
    max_cpu: str
    max_memory: str
    max_sessions: int
    heartbeat_interval: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AgentSettings:
        """The settings ``main`` reads (no check: see :meth:`K8sAgentStandIn.run`)."""
        return cls(
            agent_id=env.get("AGENT_ID", ""),
            control_plane_url=env.get("CONTROL_PLANE_URL", ""),
            api_key=env.get("AGENT_API_KEY", ""),
            platform=get_env_or_default(env, "PLATFORM", "kubernetes"),
            region=env.get("REGION", ""),
            namespace=get_env_or_default(env, "NAMESPACE", "streamspace"),
            max_cpu=get_env_or_default(env, "MAX_CPU", "64 cores"),
            max_memory=get_env_or_default(env, "MAX_MEMORY", "256Gi"),
            max_sessions=get_env_int_or_default(env, "MAX_SESSIONS", 100),
            heartbeat_interval=get_env_int_or_default(env, "HEALTH_CHECK_INTERVAL", 30),
        )

    def registration_body(self) -> bytes:
        """``registerAgent``'s ``json.Marshal(AgentRegistrationRequest)``."""
        body: dict[str, Any] = {"agentId": self.agent_id, "platform": self.platform}
        if self.region:
            body["region"] = self.region
        body["capacity"] = {  # config.AgentCapacity; storage is never set (omitempty)
            "maxSessions": self.max_sessions,
            "cpu": self.max_cpu,
            "memory": self.max_memory,
        }
        body["metadata"] = GoMap(namespace=self.namespace, kubernetes=True)
        return marshal(body)

    def heartbeat_message(self, now: datetime) -> bytes:
        """``sendHeartbeat``'s message (a ``map[string]interface{}``: keys sorted)."""
        return marshal(
            GoMap(
                type="heartbeat",
                timestamp=now,
                payload=GoMap(
                    status="online",
                    activeSessions=0,
                    capacity=GoMap(
                        maxSessions=self.max_sessions, cpu=self.max_cpu, memory=self.max_memory
                    ),
                ),
            )
        )


class K8sAgentStandIn:
    """StreamSpace's k8s-agent on the wire (module docstring).

    Args:
        env: the container's environment (``AGENT_ID``, ``CONTROL_PLANE_URL``,
            ``AGENT_API_KEY``, ``PLATFORM``, ``REGION``, ``NAMESPACE``, ``MAX_*``,
            ``HEALTH_CHECK_INTERVAL``).
        ssl_context: the trust store for ``https``/``wss`` (Go: the system roots or
            ``SSL_CERT_FILE``); None: Python's default verification.
        pending_retry_seconds: the pending wait's ticker (30 s).
        reconnect_backoff: ``ReconnectBackoff`` in seconds; None (or empty): ``Validate``'s.
        heartbeat_interval: seconds; None: ``HEALTH_CHECK_INTERVAL`` as ``main`` reads it.
        request_timeout: ``http.Client{Timeout: 10 * time.Second}``.
        local_addr: the source IP to bind (several agents look like several pods).
        ping_period, pong_wait: ``pingPeriod`` and ``pongWait``.
        handshake_timeout: ``websocket.Dialer{HandshakeTimeout: 10 * time.Second}``.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        ssl_context: ssl.SSLContext | None = None,
        pending_retry_seconds: float = 30.0,
        reconnect_backoff: Sequence[float] | None = None,
        heartbeat_interval: float | None = None,
        request_timeout: float = 10.0,
        local_addr: str | None = None,
        ping_period: float = PING_PERIOD,
        pong_wait: float = PONG_WAIT,
        handshake_timeout: float = 10.0,
    ) -> None:
        self._env = dict(env)
        self._ssl = ssl_context
        self._pending_retry = pending_retry_seconds
        self._backoff = tuple(reconnect_backoff) if reconnect_backoff else DEFAULT_BACKOFF
        self._heartbeat_override = heartbeat_interval
        self._request_timeout = request_timeout
        self._local_addr = local_addr
        self._ping_period = ping_period
        self._pong_wait = pong_wait
        self._handshake_timeout = handshake_timeout
        self.settings = AgentSettings.from_env(env)
        #: The key the agent sends now (``config.APIKey``).
        self.api_key: str = self.settings.api_key
        #: Set while a WebSocket is open.
        self.connected = asyncio.Event()
        #: Every registration answer: (status, the decoded JSON object or None).
        self.registrations: list[tuple[int, dict[str, Any] | None]] = []
        #: Every WebSocket dial: 101, the refusal's status, or None (no HTTP answer).
        self.ws_attempts: list[int | None] = []
        #: Messages written to a WebSocket, and JSON messages read from one.
        self.sent: list[bytes] = []
        self.received: list[Any] = []
        #: Set once ``writePump`` has returned (after a write error: for good).
        self.write_pump_stopped = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ws_broken = False
        self._old_sockets: list[aiohttp.ClientWebSocketResponse] = []
        self._read_deadline = 0.0
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=WRITE_QUEUE)
        self._main: asyncio.Task[None] | None = None
        self._stopping = False

    @staticmethod
    def request_body(env: Mapping[str, str]) -> bytes:
        """Exactly Go's ``json.Marshal`` of ``AgentRegistrationRequest`` for ``env``: field
        order ``agentId, platform, region (omitempty), capacity, metadata``, ``capacity``
        ``{maxSessions, cpu, memory}``, ``metadata`` keys sorted."""
        return AgentSettings.from_env(env).registration_body()

    # --- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """``main`` -> ``Validate`` -> ``runStandalone``/``Run``; returns after :meth:`stop`.

        Raises :class:`AgentExit` where Go exits: an empty ``AGENT_ID``, ``CONTROL_PLANE_URL``
        or ``AGENT_API_KEY``, or the first ``Connect`` failing (registration not 200/201/202,
        a request error or timeout, an undecodable answer, rejected while pending, the
        WebSocket dial refused or failing).
        """
        self._main = asyncio.create_task(self._run())
        try:
            await self._main
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._stopping and task is not None and not task.cancelling():
                return
            raise

    async def stop(self) -> None:
        """SIGTERM: the process ends (the pumps, any wait, the sockets)."""
        self._stopping = True
        if self._main is not None and not self._main.done():
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError, AgentExit):
                await self._main

    async def _run(self) -> None:
        settings = self.settings
        if settings.agent_id == "":
            raise AgentExit("--agent-id is required")
        if settings.control_plane_url == "":
            raise AgentExit("--control-plane-url is required")
        if settings.api_key == "":
            raise AgentExit("Invalid configuration: agent API key is required")
        connector = aiohttp.TCPConnector(
            ssl=self._ssl if self._ssl is not None else True,
            local_addr=(self._local_addr, 0) if self._local_addr else None,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        tasks: set[asyncio.Task[None]] = set()
        try:
            try:
                await self._connect()
            except _ConnectError as exc:
                raise AgentExit(f"Agent error: {exc}") from None
            tasks = {
                asyncio.create_task(self._send_heartbeats()),
                asyncio.create_task(self._read_pump()),
                asyncio.create_task(self._write_pump()),
            }
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a bug in a pump surfaces; writePump may end normally
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.connected.clear()
            for ws in [self._ws, *self._old_sockets]:
                if ws is not None:
                    with contextlib.suppress(Exception):
                        await ws.close()
            await self._session.close()

    def _heartbeat_interval(self) -> float:
        if self._heartbeat_override is not None:
            return self._heartbeat_override
        interval = self.settings.heartbeat_interval
        return float(interval if interval > 0 else 10)  # config.Validate

    # --- Connect ---------------------------------------------------------------------------------

    async def _connect(self) -> None:
        """``Connect``: ``registerAgent`` then ``connectWebSocket``."""
        try:
            await self._register()
        except _ConnectError as exc:
            raise _ConnectError(f"registration failed: {exc}") from None
        try:
            await self._dial()
        except _ConnectError as exc:
            raise _ConnectError(f"WebSocket connection failed: {exc}") from None

    async def _post_register(self) -> tuple[int, bytes]:
        """One ``client.Do`` with the current key, its body read within the client timeout."""
        assert self._session is not None
        url = convert_to_http_url(self.settings.control_plane_url) + "/api/v1/agents/register"
        headers = {
            "User-Agent": GO_USER_AGENT,
            "Content-Type": "application/json",
            "X-Agent-Api-Key": self.api_key,
            "Accept-Encoding": "gzip",
        }
        body = self.settings.registration_body()
        try:
            async with asyncio.timeout(self._request_timeout):
                async with self._session.post(
                    yarl.URL(url, encoded=True), data=body, headers=headers
                ) as response:
                    raw = await response.read()
                    status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise _RequestError(f'Post "{url}": {exc or type(exc).__name__}') from None
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = None
        self.registrations.append((status, decoded if isinstance(decoded, dict) else None))
        return status, raw

    async def _register(self) -> None:
        """``registerAgent`` (module docstring)."""
        try:
            status, raw = await self._post_register()
        except _RequestError as exc:
            raise _ConnectError(f"HTTP request failed: {exc}") from None
        if status not in (200, 201, 202):
            text = raw.decode("utf-8", "replace")
            raise _ConnectError(f"registration failed with status {status}: {text}")
        try:
            answer = decode_struct(decode_first(raw), REGISTRATION_RESPONSE)
        except GoJSONError as exc:
            raise _ConnectError(f"failed to decode response: {exc}") from None
        if answer.get("approvalStatus") == "pending":
            log.info("[K8sAgent] Registration pending administrator approval")
            answer = await self._wait_for_approval()
        if answer.get("apiKey"):
            self.api_key = answer["apiKey"]

    async def _wait_for_approval(self) -> dict[str, Any]:
        """The ``time.NewTicker(30 * time.Second)`` loop of ``registerAgent``."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self._pending_retry
        while True:
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            next_tick = max(next_tick + self._pending_retry, loop.time())
            try:
                _, raw = await self._post_register()
            except _RequestError as exc:
                log.info("[K8sAgent] Registration retry failed: %s. Continuing to wait...", exc)
                continue
            try:
                answer = decode_struct(decode_first(raw), REGISTRATION_RESPONSE)
            except GoJSONError as exc:
                log.info("[K8sAgent] Failed to decode retry response: %s", exc)
                continue
            state = answer.get("approvalStatus", "")
            if state == "pending":
                continue
            if state == "rejected":
                raise _ConnectError("agent registration was rejected by administrator")
            if answer.get("apiKey"):
                self.api_key = answer["apiKey"]
            return answer

    async def _dial(self) -> None:
        """``connectWebSocket``."""
        assert self._session is not None
        url = (
            f"{self.settings.control_plane_url}/api/v1/agents/connect"
            f"?agent_id={quote_plus(self.settings.agent_id, safe='')}"
        )
        if urlsplit(url).scheme.lower() not in ("ws", "wss"):
            self.ws_attempts.append(None)
            raise _ConnectError("WebSocket dial failed: malformed ws or wss URL")
        headers = {"User-Agent": GO_USER_AGENT, "X-Agent-Api-Key": self.api_key}
        try:
            async with asyncio.timeout(self._handshake_timeout):
                ws = await self._session.ws_connect(
                    yarl.URL(url, encoded=True),
                    headers=headers,
                    autoping=False,
                    autoclose=True,
                    compress=0,
                    max_msg_size=0,
                )
        except aiohttp.WSServerHandshakeError as exc:
            self.ws_attempts.append(exc.status)
            raise _ConnectError("WebSocket dial failed: websocket: bad handshake") from None
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            self.ws_attempts.append(None)
            raise _ConnectError(f"WebSocket dial failed: {exc or type(exc).__name__}") from None
        self.ws_attempts.append(101)
        if self._ws is not None:
            self._old_sockets.append(self._ws)  # never closed by the Go agent
        self._ws = ws
        self._ws_broken = False
        self._read_deadline = asyncio.get_running_loop().time() + self._pong_wait
        self.connected.set()

    async def _reconnect(self) -> bool:
        """``Reconnect``: for each backoff, sleep then ``Connect``."""
        for backoff in self._backoff:
            await asyncio.sleep(backoff)
            try:
                await self._connect()
            except _ConnectError as exc:
                log.info("[K8sAgent] Reconnect attempt failed: %s", exc)
                continue
            return True
        return False

    # --- pumps -----------------------------------------------------------------------------------

    async def _read_pump(self) -> None:
        """``readPump``."""
        loop = asyncio.get_running_loop()
        while True:
            ws = self._ws
            if ws is None or self._ws_broken:
                await self._reconnect()
                continue
            try:
                msg: aiohttp.WSMessage | None = await ws.receive(
                    timeout=max(0.0, self._read_deadline - loop.time())
                )
            except (TimeoutError, aiohttp.ClientError, RuntimeError):
                msg = None
            if msg is None or msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                log.info("[K8sAgent] Read error, attempting reconnect...")
                self._ws_broken = True
                self.connected.clear()
                await self._reconnect()
                continue
            if msg.type == aiohttp.WSMsgType.PING:  # gorilla's default ping handler
                with contextlib.suppress(Exception):
                    await ws.pong(msg.data)
                continue
            if msg.type == aiohttp.WSMsgType.PONG:  # SetPongHandler: renew the deadline
                self._read_deadline = loop.time() + self._pong_wait
                continue
            data = msg.data if isinstance(msg.data, str | bytes) else b""
            try:
                self.received.append(json.loads(data))
            except ValueError:
                log.info("[K8sAgent] Failed to handle message: not JSON")

    async def _write_pump(self) -> None:
        """``writePump``: queued messages and pings to the current socket; the first write
        error ends it for good."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self._ping_period
        getter: asyncio.Task[bytes] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.create_task(self._queue.get())
                done, _ = await asyncio.wait({getter}, timeout=max(0.0, next_ping - loop.time()))
                ws = self._ws
                if getter in done:
                    message = getter.result()
                    getter = None
                    if ws is None:
                        continue  # "Dropped message (connection is nil)"
                    try:
                        await ws.send_str(message.decode())
                    except Exception as exc:
                        log.info("[K8sAgent] Write error: %s", exc)
                        return
                    self.sent.append(message)
                    continue
                next_ping += self._ping_period
                if ws is None:
                    continue
                try:
                    await ws.ping()
                except Exception as exc:
                    log.info("[K8sAgent] Ping error: %s", exc)
                    return
        finally:
            if getter is not None:
                getter.cancel()
            self.write_pump_stopped.set()

    async def _send_heartbeats(self) -> None:
        """``SendHeartbeats``: a ticker; each heartbeat queued within 5 s or dropped."""
        interval = self._heartbeat_interval()
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            next_tick = max(next_tick + interval, loop.time())
            message = self.settings.heartbeat_message(datetime.now(UTC))
            try:
                await asyncio.wait_for(self._queue.put(message), SEND_TIMEOUT)
            except TimeoutError:
                log.info("[K8sAgent] Failed to send heartbeat: write channel send timeout")
