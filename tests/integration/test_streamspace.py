"""The whole path through StreamSpace: its (stand-in) API and agent, unmodified, with the webhook
and the approver as processes over real TLS and real WebSockets (:class:`demo.world.World`).

An approval counts only where the agent works: each test asserts on StreamSpace's own records
(its admin list, its WebSocket hub), not only on the approver's answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from demo.stack import ANNOTATION
from demo.world import APPROVER_USER, HUMAN_ADMIN, World
from tests.streamspace.agent import AgentExit, K8sAgentStandIn

PG_DSN_ENV = "AGENT_BOOTSTRAP_TEST_PG_DSN"

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _databases() -> list[Any]:
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]


async def _pg_admin(dsn: str, sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints

    conn = await asyncpg.connect(dsn.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fresh_pg_url(dsn: str) -> str:
    """A new, empty database on the test PostgreSQL (the approver migrates it)."""
    name = f"agent_bootstrap_{secrets.token_hex(4)}"
    await _pg_admin(dsn, f'CREATE DATABASE "{name}"')
    return dsn.rsplit("/", 1)[0] + f"/{name}"


async def _drop_pg(dsn: str, url: str) -> None:
    await _pg_admin(dsn, f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture(params=_databases())
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    database_url = None
    if request.param == "postgresql":
        dsn = os.environ.get(PG_DSN_ENV)
        if not dsn:
            pytest.skip(f"PostgreSQL not configured: set {PG_DSN_ENV}")
        database_url = await _fresh_pg_url(dsn)
    w = World(tmp_path, database_url=database_url, quiet=True)
    await w.start()
    try:
        yield w
    finally:
        codes = await w.stop()
        if database_url is not None:
            await _drop_pg(str(os.environ.get(PG_DSN_ENV)), database_url)
        assert codes == {"webhook": 0, "approver": 0}, w.stack.log("approver")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def eventually(check: Callable[[], Any], *, within: float = 8.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    async with asyncio.timeout(within):
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(agent: K8sAgentStandIn) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(agent.run())
    try:
        yield task
    finally:
        await agent.stop()
        with contextlib.suppress(AgentExit, asyncio.CancelledError):
            await task


class TestStampedAgent:
    async def test_approved_in_streamspace_and_connected(
        self, world: World, session: aiohttp.ClientSession
    ) -> None:
        """A stamped pod's unmodified agent is approved in StreamSpace's own list (by the
        approver's account), holds a key StreamSpace accepts, and its WebSocket is open there;
        its heartbeats reach StreamSpace."""
        pod = await world.create_pod(session)
        assert ANNOTATION in pod.annotations
        agent = world.agent(pod, heartbeat_interval=0.2)
        agent_id = world.agent_id(pod)
        async with running(agent):
            await world.streamspace.wait_connected(agent_id, timeout=10)
            listed = (await world.streamspace_agents())[agent_id]
            assert listed["approvalStatus"] == "approved"
            assert listed["approvedBy"] == world.streamspace.user_id(APPROVER_USER.username)
            assert len(agent.api_key) == 64  # StreamSpace's own key format
            messages = await world.streamspace.received_messages(agent_id, count=1)
            assert messages[0]["type"] == "heartbeat"
            status, record = await world.approver_admin("GET", f"/agents/{agent_id}")
            assert (status, record["agent"]["approvalMethod"]) == (200, "namespace")
        assert [s for s, _ in agent.registrations] == [200]

    async def test_reconnect_uses_the_current_key(
        self, world: World, session: aiohttp.ClientSession
    ) -> None:
        """After StreamSpace drops its WebSocket, the agent registers again with its key (200,
        no new key) and reconnects."""
        pod = await world.create_pod(session)
        agent = world.agent(pod)
        agent_id = world.agent_id(pod)
        async with running(agent):
            await world.streamspace.wait_connected(agent_id, timeout=10)
            key = agent.api_key
            await world.streamspace.drop_connection(agent_id)
            await eventually(lambda: len(agent.registrations) >= 2)
            await world.streamspace.wait_connected(agent_id, timeout=10)
            assert agent.api_key == key
            status, body = agent.registrations[-1]
            assert status == 200
            assert body is not None
            assert "apiKey" not in body

    async def test_lost_answer_and_restarted_container(
        self, world: World, session: aiohttp.ClientSession
    ) -> None:
        """The agent's first answer is lost (or its container restarts): presenting its pod's
        token again gets a working key through rotate-key, never a second approve; the old key
        is refused by StreamSpace and by the gate."""
        pod = await world.create_pod(session)
        agent_id = world.agent_id(pod)
        status, lost, _ = await world.register_once(world.env(pod), source=pod.address)
        assert status == 200
        first_key = lost["apiKey"]
        agent = world.agent(pod)
        async with running(agent):
            await world.streamspace.wait_connected(agent_id, timeout=10)
            assert agent.api_key != first_key
        assert await world.gate_connect(agent_id, first_key) == 403
        approvals = [
            r for r in world.streamspace.requests if r.path.endswith("/approve") and r.status == 200
        ]
        rotations = [r for r in world.streamspace.requests if r.path.endswith("/rotate-key")]
        assert (len(approvals), len(rotations)) == (1, 1)

    async def test_pod_deleted_leaves_no_ghost(
        self, world: World, session: aiohttp.ClientSession
    ) -> None:
        """Scale-down: the deleted pod's agent is deregistered in StreamSpace and its WebSocket
        closed by the gate."""
        pod = await world.create_pod(session)
        agent = world.agent(pod)
        agent_id = world.agent_id(pod)
        async with running(agent):
            await world.streamspace.wait_connected(agent_id, timeout=10)
            world.cluster.delete_pod(pod)

            async def gone() -> bool:
                return agent_id not in await world.streamspace_agents()

            await eventually(gone)
            await eventually(lambda: agent_id not in world.streamspace.connected_agents())
        status, record = await world.approver_admin("GET", f"/agents/{agent_id}")
        assert (status, record["agent"]["status"], record["agent"]["reason"]) == (
            200,
            "inactive",
            "pod_deleted",
        )


class TestGateEdges:
    async def test_plain_get_with_the_key_dials_nothing(
        self, world: World, session: aiohttp.ClientSession
    ) -> None:
        """A GET of the connect path that is not a WebSocket handshake gets 400 and opens
        nothing at StreamSpace (whose hub would replace the agent's live connection)."""
        pod = await world.create_pod(session)
        agent = world.agent(pod)
        agent_id = world.agent_id(pod)
        async with running(agent):
            await world.streamspace.wait_connected(agent_id, timeout=10)
            dials = sum(1 for r in world.streamspace.requests if r.path.endswith("/connect"))
            async with session.get(
                f"{world.stack.approver_url}/api/v1/agents/connect?agent_id={agent_id}",
                headers={"X-Agent-API-Key": agent.api_key},
                ssl=world.client_ssl,
            ) as answer:
                assert (answer.status, (await answer.json())["error"]) == (400, "not_a_websocket")
            after = sum(1 for r in world.streamspace.requests if r.path.endswith("/connect"))
            assert after == dials
            assert agent_id in world.streamspace.connected_agents()

    async def test_shutdown_with_open_relays_is_prompt(
        self, world: World, session: aiohttp.ClientSession
    ) -> None:
        """SIGTERM with relayed WebSockets open: the approver closes them (1001) and exits 0
        well within a pod's 30 s grace period."""
        pod = await world.create_pod(session)
        agent = world.agent(pod)
        async with running(agent):
            await world.streamspace.wait_connected(world.agent_id(pod), timeout=10)
            started = asyncio.get_running_loop().time()
            codes = await asyncio.to_thread(world.stack.stop)
            assert codes["approver"] == 0
            assert asyncio.get_running_loop().time() - started < 8


class TestNoMasterKey:
    async def test_copied_token_and_shared_key_open_nothing(
        self, world: World, session: aiohttp.ClientSession
    ) -> None:
        """A copied token registers nobody (403 token_reused); neither the shared key nor a
        token opens a WebSocket as another agent at the gate; no agent pod's environment holds
        the shared key."""
        pod = await world.create_pod(session)
        agent_id = world.agent_id(pod)
        async with running(world.agent(pod)):
            await world.streamspace.wait_connected(agent_id, timeout=10)
        token = world.env(pod)["AGENT_API_KEY"]
        other = await world.create_pod(session)
        status, body, _ = await world.register_once(
            world.env(other), key=token, source=other.address
        )
        assert (status, body["reason"]) == (403, "token_reused")
        assert await world.gate_connect(agent_id, world.shared_key) == 403
        assert await world.gate_connect(agent_id, token) == 403
        for p in (pod, other):
            assert world.shared_key not in world.env(p).values()

    async def test_token_read_from_the_annotation_is_useless_elsewhere(
        self, world: World, session: aiohttp.ClientSession
    ) -> None:
        """Anyone who may get pods can read a pod's token; presented for that very agent id
        from another address it gets nothing (403 pod_address_mismatch), and the agent keeps
        its key and its WebSocket."""
        pod = await world.create_pod(session)
        agent = world.agent(pod)
        agent_id = world.agent_id(pod)
        async with running(agent):
            await world.streamspace.wait_connected(agent_id, timeout=10)
            key = agent.api_key
            status, body, _ = await world.register_once(world.env(pod), source="127.0.9.9")
            assert (status, body["reason"]) == (403, "pod_address_mismatch")
            assert "apiKey" not in body
            await asyncio.sleep(3 * world.sync_seconds)
            assert agent_id in world.streamspace.connected_agents()
            assert await world.gate_connect(agent_id, key) == 101


class TestManualApproval:
    async def test_pending_in_streamspace_until_its_admin_approves(
        self, world: World, session: aiohttp.ClientSession
    ) -> None:
        """An agent pod of an untrusted namespace (its planted token stripped by the webhook)
        presents its pod UID, waits pending, shows pending in StreamSpace's list, and connects
        once StreamSpace's administrator approves it there; the approver records it as a manual
        approval by that administrator."""
        pod = await world.create_pod(
            session, namespace="team-sandbox", annotations={ANNOTATION: "planted.token.value"}
        )
        assert ANNOTATION not in pod.annotations
        assert world.env(pod)["AGENT_API_KEY"] == pod.uid
        agent = world.agent(pod)
        agent_id = world.agent_id(pod)
        async with running(agent):

            async def listed_pending() -> bool:
                row = (await world.streamspace_agents()).get(agent_id)
                return row is not None and row["approvalStatus"] == "pending"

            await eventually(listed_pending)
            assert agent_id not in world.streamspace.connected_agents()
            status, _ = await world.streamspace_admin("POST", f"/agents/{agent_id}/approve")
            assert status == 200
            await world.streamspace.wait_connected(agent_id, timeout=10)
        status, record = await world.approver_admin("GET", f"/agents/{agent_id}")
        assert status == 200
        assert record["agent"]["approvalMethod"] == "manual"
        human = world.streamspace.user_id(HUMAN_ADMIN.username)
        assert record["agent"]["approvedBy"] == f"streamspace:{human}"
        assert {s for s, _ in agent.registrations} == {202, 200}

    async def test_the_key_goes_only_where_the_approved_registration_came_from(
        self, world: World, session: aiohttp.ClientSession
    ) -> None:
        """The placeholder (the pod's UID) can be read by anyone who may get pods: after the
        administrator approves, presenting it from another address gets 403
        pod_address_mismatch and no key, and the pod's own agent still gets its key."""
        pod = await world.create_pod(session, namespace="team-sandbox")
        agent_id = world.agent_id(pod)
        status, _, _ = await world.register_once(world.env(pod), source=pod.address)
        assert status == 202

        async def listed() -> bool:
            return agent_id in await world.streamspace_agents()

        await eventually(listed)
        await world.streamspace_admin("POST", f"/agents/{agent_id}/approve")

        async def adopted() -> bool:
            _, record = await world.approver_admin("GET", f"/agents/{agent_id}")
            return bool(record["agent"]["status"] == "active")

        await eventually(adopted)
        status, body, _ = await world.register_once(world.env(pod), source="127.0.9.10")
        assert (status, body["reason"]) == (403, "pod_address_mismatch")
        assert "apiKey" not in body
        agent = world.agent(pod)
        async with running(agent):
            await world.streamspace.wait_connected(agent_id, timeout=10)
        _, record = await world.approver_admin("GET", f"/agents/{agent_id}")
        assert record["agent"]["sourceAddress"] == pod.address

    async def test_rejected_there_stops_the_agent(
        self, world: World, session: aiohttp.ClientSession
    ) -> None:
        """StreamSpace's administrator rejects the pending agent there: its next retry is
        refused and it stops, as with StreamSpace alone (main.go, the pending loop)."""
        pod = await world.create_pod(session, namespace="team-sandbox")
        agent = world.agent(pod)
        agent_id = world.agent_id(pod)
        task = asyncio.create_task(agent.run())
        try:

            async def listed() -> bool:
                return agent_id in await world.streamspace_agents()

            await eventually(listed)
            await world.streamspace_admin("POST", f"/agents/{agent_id}/reject")
            with pytest.raises(AgentExit, match="rejected"):
                await asyncio.wait_for(task, timeout=10)
        finally:
            await agent.stop()
        _, record = await world.approver_admin("GET", f"/agents/{agent_id}")
        assert (record["agent"]["status"], record["agent"]["reason"]) == (
            "rejected",
            "rejected_in_control_plane",
        )


class TestOutage:
    async def test_streamspace_down_is_pending_and_nothing_written(
        self, world: World, session: aiohttp.ClientSession
    ) -> None:
        """With StreamSpace down, a new agent gets 202 pending with Retry-After and the approver
        writes nothing; once StreamSpace is back, the agent's retry is approved there."""
        await world.streamspace.stop_listening()
        pod = await world.create_pod(session)
        agent_id = world.agent_id(pod)
        status, body, headers = await world.register_once(world.env(pod), source=pod.address)
        assert status == 202
        assert int(headers["Retry-After"]) >= 1
        assert (body["approvalStatus"], body["reason"]) == ("pending", "control_plane_unavailable")
        status, _ = await world.approver_admin("GET", f"/agents/{agent_id}")
        assert status == 404
        await world.streamspace.resume()
        agent = world.agent(pod)
        async with running(agent):
            await world.streamspace.wait_connected(agent_id, timeout=10)


class TestBurst:
    async def test_more_agents_than_a_connection_pool(
        self, world: World, session: aiohttp.ClientSession
    ) -> None:
        """120 agents at once (more than aiohttp's default pool of 100 connections, each from
        its own address as pods are): every one approved in StreamSpace and connected."""
        count = 120
        pods = await asyncio.gather(*(world.create_pod(session) for _ in range(count)))
        agents = [world.agent(pod, heartbeat_interval=30.0) for pod in pods]
        async with contextlib.AsyncExitStack() as stack:
            for agent in agents:
                await stack.enter_async_context(running(agent))
            await eventually(lambda: len(world.streamspace.connected_agents()) == count, within=30)
        listed = await world.streamspace_agents()
        assert sum(1 for a in listed.values() if a["approvalStatus"] == "approved") == count
