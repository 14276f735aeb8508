"""The k8s-agent stand-in behaves as StreamSpace's agent (``agents/k8s-agent/main.go``, c4fc035)
does, against the control-plane stand-in over real TLS and against scripted servers."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.streamspace.agent import (
    AgentExit,
    AgentSettings,
    K8sAgentStandIn,
    convert_to_http_url,
)
from tests.streamspace.conftest import (
    BOOTSTRAP_KEY,
    FIXTURE_ENV,
    ControlPlaneFactory,
    login,
    wait_until,
)

AGENT_ID = FIXTURE_ENV["AGENT_ID"]


def agent_env(url: str, key: str = BOOTSTRAP_KEY, **extra: str) -> dict[str, str]:
    """The Deployment's environment with a control plane URL and a key."""
    return {**FIXTURE_ENV, "CONTROL_PLANE_URL": url, "AGENT_API_KEY": key, **extra}


@dataclass
class Seen:
    """A request a scripted server received."""

    method: str
    path_qs: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Script:
    """A scripted control plane: registration answers in order, then the WebSocket."""

    answers: list[tuple[int, bytes]]
    seen: list[Seen] = field(default_factory=list)
    ws_open: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[str]]]:
    """``await start(script)``: a plain-HTTP server playing ``script``; its ws:// URL."""
    runners: list[web.AppRunner] = []

    async def start(script: Script) -> str:
        async def handle(request: web.Request) -> web.StreamResponse:
            script.seen.append(
                Seen(
                    request.method,
                    request.path_qs,
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
                    await request.read(),
                )
            )
            if request.path == "/api/v1/agents/connect":
                ws = web.WebSocketResponse()
                await ws.prepare(request)
                script.ws_open.set()
                async for _ in ws:
                    pass
                return ws
            status, body = script.answers.pop(0) if len(script.answers) > 1 else script.answers[0]
            return web.Response(status=status, body=body, content_type="application/json")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"ws://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def run_until_exit(
    agent: K8sAgentStandIn,
    timeout: float = 10.0,  # noqa: ASYNC109 - the helper's own deadline
) -> AgentExit:
    """Run the agent until it exits; the exit."""
    with pytest.raises(AgentExit) as caught:
        async with asyncio.timeout(timeout):
            await agent.run()
    return caught.value


@pytest.fixture
async def running() -> AsyncIterator[Callable[[K8sAgentStandIn], asyncio.Task[None]]]:
    """``start(agent)``: run it in a task, stopped after the test."""
    started: list[tuple[K8sAgentStandIn, asyncio.Task[None]]] = []

    def start(agent: K8sAgentStandIn) -> asyncio.Task[None]:
        task = asyncio.create_task(agent.run())
        started.append((agent, task))
        return task

    yield start
    for agent, task in started:
        await agent.stop()
        if task.done() and not task.cancelled():
            exc = task.exception()
            assert exc is None or isinstance(exc, AgentExit)


# --- the request ---------------------------------------------------------------------------------


def test_request_body_is_the_fixture(fixture_request: dict[str, Any]) -> None:
    """``registerAgent``'s ``json.Marshal(AgentRegistrationRequest)`` for the fixture's
    environment is the captured body, byte for byte."""
    assert K8sAgentStandIn.request_body(FIXTURE_ENV) == fixture_request["body"].encode()


def test_settings_from_env() -> None:
    """``main``: ``getEnvIntOrDefault`` reads a Go duration first (``"30s"`` is 30, ``"1m"``
    60) then an integer; ``getEnvOrDefault`` treats empty as unset; ``REGION`` has no default
    and is omitted from the body when empty; ``convertToHTTPURL`` maps ws/wss."""
    settings = AgentSettings.from_env(
        {"HEALTH_CHECK_INTERVAL": "30s", "MAX_SESSIONS": "1m", "PLATFORM": "", "NAMESPACE": ""}
    )
    assert (settings.heartbeat_interval, settings.max_sessions) == (30, 60)
    assert (settings.platform, settings.namespace, settings.region) == (
        "kubernetes",
        "streamspace",
        "",
    )
    assert AgentSettings.from_env({"MAX_SESSIONS": "lots"}).max_sessions == 100
    assert b'"region"' not in settings.registration_body()
    assert convert_to_http_url("wss://h:1") == "https://h:1"
    assert convert_to_http_url("ws://h:1") == "http://h:1"
    assert convert_to_http_url("http://h:1") == "http://h:1"


async def test_request_on_the_wire_is_the_fixture(
    scripted: Callable[[Script], Awaitable[str]], fixture_request: dict[str, Any]
) -> None:
    """The registration request as sent: the fixture's method, path, headers (Go's
    ``net/http`` ones and ``X-Agent-Api-Key`` canonicalised) and body; a 503 on the first
    attempt ends the agent (``runStandalone``: ``log.Fatalf``)."""
    script = Script(answers=[(503, b'{"error":"down"}')])
    url = await scripted(script)
    key = "a1" * 32
    exit_ = await run_until_exit(K8sAgentStandIn(agent_env(url, key)))
    assert exit_.reason.startswith(
        "Agent error: registration failed: registration failed with status 503: "
    )
    (seen,) = script.seen
    assert (seen.method, seen.path_qs) == (fixture_request["method"], fixture_request["path"])
    assert seen.body == fixture_request["body"].encode()
    expected = dict(fixture_request["headers"])
    expected["Host"] = url.removeprefix("ws://")
    expected["X-Agent-Api-Key"] = key
    assert dict(seen.headers) == expected
    assert len(seen.headers) == len(expected)


# --- exits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "reason"),
    [
        ("AGENT_ID", "--agent-id is required"),
        ("CONTROL_PLANE_URL", "--control-plane-url is required"),
        ("AGENT_API_KEY", "Invalid configuration: agent API key is required"),
    ],
)
async def test_exits_on_missing_setting(missing: str, reason: str) -> None:
    """``main``'s ``log.Fatal`` for an empty agent id or URL, ``config.Validate``'s for an
    empty ``AGENT_API_KEY``."""
    env = agent_env("ws://127.0.0.1:9")
    env[missing] = ""
    assert (await run_until_exit(K8sAgentStandIn(env))).reason == reason


async def test_exits_on_first_400_and_on_connection_refused(
    control_plane_factory: ControlPlaneFactory,
) -> None:
    """``registerAgent``: StreamSpace's 400 (here its validation of an unknown platform) on the
    first attempt is fatal; so is a refused connection."""
    cp = await control_plane_factory()
    agent = K8sAgentStandIn(agent_env(cp.ws_url, PLATFORM="mainframe"))
    exit_ = await run_until_exit(agent)
    assert "registration failed with status 400" in exit_.reason
    assert agent.registrations[0][0] == 400
    port = cp.port
    await cp.close()
    exit_ = await run_until_exit(K8sAgentStandIn(agent_env(f"ws://127.0.0.1:{port}")))
    assert exit_.reason.startswith("Agent error: registration failed: HTTP request failed: ")


async def test_exits_on_timeout_and_on_undecodable_answer(
    control_plane_factory: ControlPlaneFactory, scripted: Callable[[Script], Awaitable[str]]
) -> None:
    """``http.Client{Timeout: 10s}``: a slow first answer is fatal; a 200 whose body does not
    decode into ``AgentRegistrationResponse`` is fatal too."""
    cp = await control_plane_factory()
    cp.latency_seconds = 0.4
    exit_ = await run_until_exit(K8sAgentStandIn(agent_env(cp.ws_url), request_timeout=0.2))
    assert "HTTP request failed" in exit_.reason
    url = await scripted(Script(answers=[(200, b"<html>proxy</html>")]))
    exit_ = await run_until_exit(K8sAgentStandIn(agent_env(url)))
    assert exit_.reason.startswith("Agent error: registration failed: failed to decode response")


# --- pending, approval, keys ---------------------------------------------------------------------


async def test_waits_while_pending_then_connects_after_approval_over_tls(
    control_plane_factory: ControlPlaneFactory,
    client_ssl: ssl.SSLContext,
    running: Callable[[K8sAgentStandIn], asyncio.Task[None]],
) -> None:
    """With the shared key: 202 pending, retries every ``pending_retry_seconds``; once an admin
    approves through the admin API, the next answer is 200 ``approved`` without ``apiKey``
    (``RegisterAgent``), so the agent keeps the shared key and opens the WebSocket with it
    (the shared key is a master key in ``RequireAuth``); heartbeats flow as JSON messages."""
    cp = await control_plane_factory(tls=True)
    agent = K8sAgentStandIn(
        agent_env(cp.ws_url),
        ssl_context=client_ssl,
        pending_retry_seconds=0.1,
        heartbeat_interval=0.1,
    )
    running(agent)
    await wait_until(lambda: len(agent.registrations) >= 2)
    assert [s for s, _ in agent.registrations[:2]] == [202, 202]
    assert not agent.connected.is_set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as http:
        token = await login(http, cp)
        async with http.post(
            cp.url + f"/api/v1/admin/agents/{AGENT_ID}/approve",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 200
    await asyncio.wait_for(agent.connected.wait(), 5)
    assert agent.registrations[-1][0] == 200
    assert agent.registrations[-1][1]["approvalStatus"] == "approved"  # type: ignore[index]
    assert agent.api_key == BOOTSTRAP_KEY
    assert agent.ws_attempts == [101]
    await cp.wait_connected(AGENT_ID)
    (heartbeat,) = (await cp.received_messages(AGENT_ID))[:1]
    assert list(heartbeat) == ["payload", "timestamp", "type"]
    assert heartbeat["payload"] == {
        "activeSessions": 0,
        "capacity": {"cpu": "64 cores", "maxSessions": 100, "memory": "256Gi"},
        "status": "online",
    }
    assert heartbeat["type"] == "heartbeat"
    connect = [r for r in cp.requests if r.path == "/api/v1/agents/connect"]
    assert [(r.status, r.auth_method) for r in connect] == [(101, "bootstrap_key")]
    assert cp.agent_row(AGENT_ID)["status"] == "online"  # type: ignore[index]


async def test_rejected_while_pending_exits(
    control_plane_factory: ControlPlaneFactory, client_ssl: ssl.SSLContext
) -> None:
    """``registerAgent``'s wait: an answer saying ``rejected`` ends it with an error (first
    ``Connect``: fatal)."""
    cp = await control_plane_factory(tls=True)
    agent = K8sAgentStandIn(agent_env(cp.ws_url), ssl_context=client_ssl, pending_retry_seconds=0.1)
    task = asyncio.create_task(agent.run())
    await wait_until(lambda: len(agent.registrations) >= 1)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as http:
        token = await login(http, cp)
        async with http.post(
            cp.url + f"/api/v1/admin/agents/{AGENT_ID}/reject",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 200
    with pytest.raises(AgentExit) as caught:
        await asyncio.wait_for(task, 5)
    assert caught.value.reason == (
        "Agent error: registration failed: agent registration was rejected by administrator"
    )
    assert agent.registrations[-1][0] == 403


async def test_rate_limited_retry_counts_as_approved(
    control_plane_factory: ControlPlaneFactory, client_ssl: ssl.SSLContext
) -> None:
    """``registerAgent``'s wait does not look at the status code: a 429's JSON has no
    ``approvalStatus``, so it counts as approved and the agent dials the WebSocket, which the
    same limiter refuses (429): the first ``Connect`` fails and the agent exits."""
    cp = await control_plane_factory(tls=True, rate_limit_rpm=2)
    agent = K8sAgentStandIn(
        agent_env(cp.ws_url), ssl_context=client_ssl, pending_retry_seconds=0.05
    )
    exit_ = await run_until_exit(agent)
    assert [s for s, _ in agent.registrations] == [202, 202, 429]
    assert agent.ws_attempts == [429]
    assert exit_.reason == (
        "Agent error: WebSocket connection failed: WebSocket dial failed: websocket: bad handshake"
    )


async def test_switches_to_the_api_key_of_an_approved_answer(
    scripted: Callable[[Script], Awaitable[str]],
    running: Callable[[K8sAgentStandIn], asyncio.Task[None]],
) -> None:
    """``registerAgent``: an ``apiKey`` in the approved answer becomes ``config.APIKey``; the
    WebSocket is dialled with it (``connectWebSocket``), its agent id query-escaped."""
    new_key = "d4" * 32
    script = Script(
        answers=[
            (202, b'{"approvalStatus":"pending","message":"wait"}'),
            (200, json.dumps({"approvalStatus": "approved", "apiKey": new_key}).encode()),
        ]
    )
    url = await scripted(script)
    agent = K8sAgentStandIn(agent_env(url, AGENT_ID="agent one+two"), pending_retry_seconds=0.05)
    running(agent)
    await asyncio.wait_for(script.ws_open.wait(), 5)
    assert agent.api_key == new_key
    registers = [s for s in script.seen if s.path_qs == "/api/v1/agents/register"]
    assert [dict(s.headers)["X-Agent-Api-Key"] for s in registers] == [BOOTSTRAP_KEY] * 2
    dial = script.seen[-1]
    assert dial.path_qs == "/api/v1/agents/connect?agent_id=agent+one%2Btwo"
    headers = dict(dial.headers)
    assert headers["X-Agent-Api-Key"] == new_key
    assert headers["User-Agent"] == "Go-http-client/1.1"
    assert "Sec-WebSocket-Extensions" not in headers


async def test_exits_when_the_first_websocket_dial_fails(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    """``connectWebSocket``: gorilla dials only ws/wss URLs, so an ``http://`` control plane
    URL registers (``convertToHTTPURL`` leaves it as it is) and then fails on the WebSocket:
    the first ``Connect`` fails, fatal."""
    script = Script(answers=[(201, b'{"agentId":"x","status":"offline"}')])
    url = (await scripted(script)).replace("ws://", "http://")
    agent = K8sAgentStandIn(agent_env(url))
    exit_ = await run_until_exit(agent)
    assert agent.registrations == [(201, {"agentId": "x", "status": "offline"})]
    assert exit_.reason == (
        "Agent error: WebSocket connection failed: WebSocket dial failed: malformed ws or wss URL"
    )
    assert agent.ws_attempts == [None]


# --- reconnection --------------------------------------------------------------------------------


async def test_reconnects_with_its_current_key_after_a_drop(
    control_plane_factory: ControlPlaneFactory,
    client_ssl: ssl.SSLContext,
    running: Callable[[K8sAgentStandIn], asyncio.Task[None]],
) -> None:
    """``readPump`` -> ``Reconnect``: after the server drops the socket, the agent sleeps the
    first backoff, registers again with its current (individual) key, then dials again."""
    cp = await control_plane_factory(tls=True)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as http:
        token = await login(http, cp)
        async with http.post(
            cp.url + "/api/v1/agents/register",
            data=K8sAgentStandIn.request_body(FIXTURE_ENV),
            headers={"X-Agent-API-Key": BOOTSTRAP_KEY},
        ) as response:
            assert response.status == 202
        async with http.post(
            cp.url + f"/api/v1/admin/agents/{AGENT_ID}/approve",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            key = (await response.json())["apiKey"]
    agent = K8sAgentStandIn(
        agent_env(cp.ws_url, key),
        ssl_context=client_ssl,
        reconnect_backoff=[0.1],
        heartbeat_interval=3600,
    )
    running(agent)
    await asyncio.wait_for(agent.connected.wait(), 5)
    await cp.wait_connected(AGENT_ID)
    assert agent.registrations[0][0] == 200
    await cp.drop_connection(AGENT_ID)
    await wait_until(lambda: agent.ws_attempts == [101, 101])
    await cp.wait_connected(AGENT_ID)
    agent_requests = [r for r in cp.requests if r.path.startswith("/api/v1/agents/")]
    assert [(r.path.rsplit("/", 1)[1], r.status, r.auth_method) for r in agent_requests] == [
        ("register", 202, "bootstrap_key"),
        ("register", 200, "agent_api_key"),
        ("connect", 101, "agent_api_key"),
        ("register", 200, "agent_api_key"),
        ("connect", 101, "agent_api_key"),
    ]


async def test_keeps_reconnecting_through_an_outage(
    control_plane_factory: ControlPlaneFactory,
    client_ssl: ssl.SSLContext,
    running: Callable[[K8sAgentStandIn], asyncio.Task[None]],
) -> None:
    """``Reconnect`` failing on every backoff does not end the agent: ``readPump`` fails again
    at once and reconnects again, until the control plane is back."""
    cp = await control_plane_factory(tls=True)
    agent = K8sAgentStandIn(
        agent_env(cp.ws_url),
        ssl_context=client_ssl,
        reconnect_backoff=[0.05, 0.05],
        heartbeat_interval=3600,
        pending_retry_seconds=0.05,
    )
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as http:
        token = await login(http, cp)
        running(agent)
        await wait_until(lambda: len(agent.registrations) >= 1)
        async with http.post(
            cp.url + f"/api/v1/admin/agents/{AGENT_ID}/approve",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 200
    await asyncio.wait_for(agent.connected.wait(), 5)
    await cp.stop_listening()
    await asyncio.sleep(0.5)  # several Reconnect rounds of two backoffs fail
    assert not agent.connected.is_set()
    await cp.resume()
    await asyncio.wait_for(agent.connected.wait(), 5)
    await cp.wait_connected(AGENT_ID)
    assert agent.ws_attempts[0] == 101
    assert agent.ws_attempts[-1] == 101


async def test_a_failed_write_ends_the_write_pump_for_good(
    control_plane_factory: ControlPlaneFactory,
    running: Callable[[K8sAgentStandIn], asyncio.Task[None]],
) -> None:
    """``writePump`` returns on its first write error: a heartbeat due while the socket is down
    (during ``Reconnect``'s backoff) stops heartbeats and pings for the rest of the process,
    though the agent reconnects."""
    cp = await control_plane_factory()
    agent = K8sAgentStandIn(
        agent_env(cp.ws_url),
        reconnect_backoff=[0.5],
        heartbeat_interval=0.1,
        pending_retry_seconds=0.05,
    )
    running(agent)
    await wait_until(lambda: len(agent.registrations) >= 1)
    async with aiohttp.ClientSession() as http:
        token = await login(http, cp)
        async with http.post(
            cp.url + f"/api/v1/admin/agents/{AGENT_ID}/approve",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 200
    await asyncio.wait_for(agent.connected.wait(), 5)
    await cp.received_messages(AGENT_ID)
    await cp.drop_connection(AGENT_ID)
    await asyncio.wait_for(agent.write_pump_stopped.wait(), 5)
    await wait_until(lambda: agent.ws_attempts == [101, 101])
    await cp.wait_connected(AGENT_ID)
    before = len(cp.messages[AGENT_ID])
    await asyncio.sleep(0.5)
    assert len(cp.messages[AGENT_ID]) == before


async def test_several_agents_from_several_addresses(
    control_plane_factory: ControlPlaneFactory,
    running: Callable[[K8sAgentStandIn], asyncio.Task[None]],
) -> None:
    """``local_addr``: agents bound to different loopback addresses are different ``ClientIP``s
    (separate rate-limit windows, as separate pods)."""
    cp = await control_plane_factory()
    agents = [
        K8sAgentStandIn(agent_env(cp.ws_url, AGENT_ID=f"agent-{n}"), local_addr=f"127.0.0.{n}")
        for n in (7, 8)
    ]
    for agent in agents:
        running(agent)
    await wait_until(lambda: all(a.registrations for a in agents))
    assert {r.client_ip for r in cp.requests} == {"127.0.0.7", "127.0.0.8"}
