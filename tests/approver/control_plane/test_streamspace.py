"""The StreamSpace adapter against the StreamSpace stand-in (tests/streamspace): every call is
one StreamSpace's own, unmodified API answers (api/cmd/main.go setupRoutes, commit c4fc035)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from approver.connectors.settings import StreamSpaceSettings
from approver.connectors.streamspace import SecretFile, StreamSpace, from_settings
from approver.domain.control_plane import (
    AgentIntent,
    ControlPlaneRejected,
    ControlPlaneState,
    ControlPlaneUnavailable,
)
from tests.payloads import streamspace_registration_body
from tests.streamspace.control_plane import ControlPlaneConfig, StreamSpaceControlPlane, User

AGENT = "k8s-prod-cluster-streamspace-k8s-agent-7d9f8b6c5-bb9n5"
SHARED_KEY = secrets.token_hex(32)
ADMIN = User("agent-bootstrap", "approver-Passw0rd!", role="admin")
HUMAN = User("alice", "alice-Passw0rd!", role="admin")


@dataclass
class World:
    streamspace: StreamSpaceControlPlane
    adapter: StreamSpace
    files: Path

    def intent(self, agent_id: str = AGENT, ip: str | None = "10.1.2.3") -> AgentIntent:
        return AgentIntent(
            agent_id=agent_id,
            body=streamspace_registration_body(agent_id=agent_id),
            client_ip=ip,
        )

    def state(self, agent_id: str = AGENT) -> str | None:
        row = self.streamspace.agent_row(agent_id)
        return None if row is None else str(row["approval_status"])


def secret(path: Path, value: str) -> SecretFile:
    path.write_text(value + "\n")
    return SecretFile(path, what=path.name)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    streamspace = StreamSpaceControlPlane(
        ControlPlaneConfig(bootstrap_key=SHARED_KEY, users=(ADMIN, HUMAN), bcrypt_cost=4)
    )
    await streamspace.start()
    adapter = StreamSpace(
        base_url=streamspace.url,
        bootstrap_key=secret(tmp_path / "key", SHARED_KEY),
        admin_username=secret(tmp_path / "user", ADMIN.username),
        admin_password=secret(tmp_path / "password", ADMIN.password),
        budget_seconds=2.0,
        request_timeout_seconds=1.0,
    )
    try:
        yield World(streamspace, adapter, tmp_path)
    finally:
        await adapter.close()
        await streamspace.close()


async def as_human(world: World, method: str, path: str) -> tuple[int, dict[str, object]]:
    """An administrator's call on StreamSpace's admin API (login, then the call)."""
    base = world.streamspace.url
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base}/api/v1/auth/login",
            json={"username": HUMAN.username, "password": HUMAN.password},
        ) as login:
            token = (await login.json())["token"]
        async with session.request(
            method, f"{base}{path}", headers={"Authorization": f"Bearer {token}"}
        ) as answer:
            return answer.status, await answer.json()


async def register_with(world: World, key: str, agent_id: str = AGENT) -> int:
    """StreamSpace's own answer to a registration with ``key`` (as the agent would send it)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{world.streamspace.url}/api/v1/agents/register",
            data=streamspace_registration_body(agent_id=agent_id),
            headers={"Content-Type": "application/json", "X-Agent-API-Key": key},
        ) as answer,
    ):
        return answer.status


class TestAdmit:
    async def test_pending_row_in_streamspace(self, world: World) -> None:
        """admit makes StreamSpace's own row, pending, with the agent's body as sent."""
        assert await world.adapter.admit(world.intent()) is ControlPlaneState.PENDING
        row = world.streamspace.agent_row(AGENT)
        assert row is not None
        assert (row["approval_status"], row["capacity"]) == (
            "pending",
            {"maxSessions": 100, "cpu": "64 cores", "memory": "256Gi"},
        )

    async def test_again_reports_the_decision_there(self, world: World) -> None:
        """admit of a row an administrator decided reports that decision."""
        await world.adapter.admit(world.intent())
        await as_human(world, "POST", f"/api/v1/admin/agents/{AGENT}/reject")
        assert await world.adapter.admit(world.intent()) is ControlPlaneState.REJECTED

    async def test_forwarded_client_address_is_the_rate_limit_key(self, world: World) -> None:
        """X-Forwarded-For carries the agent's address, so StreamSpace's per-client limit
        (agentRateLimit, gin ClientIP) counts each agent apart from the approver."""
        await world.adapter.admit(world.intent(ip="10.9.8.7"))
        await world.adapter.admit(world.intent(agent_id=AGENT + "x", ip="10.9.8.6"))
        seen = [r.client_ip for r in world.streamspace.requests if r.path.endswith("/register")]
        assert seen == ["10.9.8.7", "10.9.8.6"]

    async def test_rate_limit_past_the_budget(self, world: World) -> None:
        """The 61st registration of one client in a minute is StreamSpace's 429; the adapter
        gives up within its budget, with StreamSpace's retryAfter (60 s)."""
        for n in range(60):
            await world.adapter.admit(world.intent(agent_id=f"{AGENT}-{n}", ip="10.0.0.1"))
        with pytest.raises(ControlPlaneUnavailable) as info:
            await world.adapter.admit(world.intent(agent_id=f"{AGENT}-61", ip="10.0.0.1"))
        assert info.value.retry_after == 60

    async def test_wrong_shared_key(self, world: World) -> None:
        """A shared key StreamSpace does not know is an outage (and logged), not a refusal."""
        (world.files / "key").write_text(secrets.token_hex(32))
        world.adapter._bootstrap_key.read()
        with pytest.raises(ControlPlaneUnavailable, match="shared key"):
            await world.adapter.admit(world.intent())
        assert world.streamspace.agent_row(AGENT) is None


class TestGrant:
    async def test_first_approval(self, world: World) -> None:
        """grant of an unknown agent: pending row, approve; StreamSpace accepts the key."""
        grant = await world.adapter.grant(world.intent(), known=None)
        assert not grant.rotated
        assert len(grant.credential) == 64
        assert world.state() == "approved"
        assert await register_with(world, grant.credential) == 200

    async def test_lost_answer_is_a_rotation(self, world: World) -> None:
        """grant of an approved agent rotates its key (never a second approve): the old key
        stops working at once."""
        first = await world.adapter.grant(world.intent(), known=None)
        again = await world.adapter.grant(world.intent(), known=ControlPlaneState.APPROVED)
        assert again.rotated
        assert again.credential != first.credential
        assert await register_with(world, first.credential) == 403
        assert await register_with(world, again.credential) == 200
        approvals = [
            r for r in world.streamspace.requests if r.path.endswith("/approve") and r.status == 200
        ]
        assert len(approvals) == 1

    async def test_stale_hint_is_corrected(self, world: World) -> None:
        """A hint 'pending' for an agent approved meanwhile ends in a rotation."""
        await world.adapter.grant(world.intent(), known=None)
        grant = await world.adapter.grant(world.intent(), known=ControlPlaneState.PENDING)
        assert grant.rotated

    async def test_rejected_there(self, world: World) -> None:
        """An agent its administrator rejected is not approved by the approver."""
        await world.adapter.admit(world.intent())
        await as_human(world, "POST", f"/api/v1/admin/agents/{AGENT}/reject")
        with pytest.raises(ControlPlaneRejected) as info:
            await world.adapter.grant(world.intent(), known=ControlPlaneState.PENDING)
        assert info.value.reason == "rejected_in_control_plane"
        assert world.state() == "rejected"

    async def test_deleted_while_approved(self, world: World) -> None:
        """An approved agent deleted there is not silently made again."""
        await world.adapter.grant(world.intent(), known=None)
        await as_human(world, "DELETE", f"/api/v1/admin/agents/{AGENT}")
        with pytest.raises(ControlPlaneRejected) as info:
            await world.adapter.grant(world.intent(), known=ControlPlaneState.APPROVED)
        assert info.value.reason == "removed_in_control_plane"
        assert world.state() is None

    async def test_down(self, world: World) -> None:
        """StreamSpace not listening: ControlPlaneUnavailable within the budget."""
        await world.streamspace.stop_listening()
        with pytest.raises(ControlPlaneUnavailable):
            await world.adapter.grant(world.intent(), known=None)
        await world.streamspace.resume()
        assert (await world.adapter.grant(world.intent(), known=None)).credential


class TestAdminSide:
    async def test_snapshot(self, world: World) -> None:
        """The admin list, by agent id, with who decided."""
        await world.adapter.admit(world.intent())
        await world.adapter.admit(world.intent(agent_id=AGENT + "-b"))
        await as_human(world, "POST", f"/api/v1/admin/agents/{AGENT}/approve")
        listed = await world.adapter.snapshot()
        assert listed[AGENT].state is ControlPlaneState.APPROVED
        assert listed[AGENT].decided_by == world.streamspace.user_id(HUMAN.username)
        assert listed[AGENT + "-b"].state is ControlPlaneState.PENDING

    async def test_approve_reject_remove(self, world: World) -> None:
        """approve, reject and remove act on StreamSpace's own rows, idempotently."""
        assert await world.adapter.approve(world.intent()) is ControlPlaneState.APPROVED
        assert await world.adapter.approve(world.intent()) is ControlPlaneState.APPROVED
        assert world.state() == "approved"
        assert await world.adapter.reject(AGENT) is ControlPlaneState.ABSENT  # approved: deleted
        await world.adapter.admit(world.intent())
        assert await world.adapter.reject(AGENT) is ControlPlaneState.REJECTED
        await world.adapter.remove(AGENT)
        await world.adapter.remove(AGENT)
        assert world.state() is None

    async def test_login_again_after_expiry(self, world: World) -> None:
        """A 401 (token expired, or sessions cleared by a restart) logs in again once."""
        await world.adapter.snapshot()
        world.adapter._token = "expired-" + secrets.token_hex(8)
        assert await world.adapter.snapshot() == {}
        logins = [r for r in world.streamspace.requests if r.path == "/api/v1/auth/login"]
        assert len(logins) == 2

    async def test_wrong_password(self, world: World) -> None:
        """A password StreamSpace refuses is an outage, its files read again, no secret shown."""
        (world.files / "password").write_text("not-it")
        world.adapter._password.read()
        with pytest.raises(ControlPlaneUnavailable, match="admin login") as info:
            await world.adapter.snapshot()
        assert "not-it" not in str(info.value)

    def test_refusal_is_streamspace_validation(self, world: World) -> None:
        """StreamSpace's AgentRegistrationRequest rules, before anything is sent."""
        body = json.loads(streamspace_registration_body())
        assert world.adapter.refusal(body) is None
        assert "agentId" in str(world.adapter.refusal({**body, "agentId": "ab"}))
        assert "platform" in str(world.adapter.refusal({**body, "platform": "mainframe"}))
        assert "region" in str(world.adapter.refusal({**body, "region": "x"}))


def test_secret_file_mode_is_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A world-readable secret file is warned about (setting and path named), never shown."""
    path = tmp_path / "password"
    path.write_text("s3cret-value\n")
    path.chmod(0o644)
    with caplog.at_level("WARNING"):
        assert SecretFile(path, what="adminPasswordFile").value == "s3cret-value"
    assert "controlPlane.streamspace.adminPasswordFile" in caplog.text
    assert str(path) in caplog.text
    assert "s3cret-value" not in caplog.text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level("WARNING"):
        SecretFile(path, what="adminPasswordFile")
    assert caplog.text == ""


class TestFromSettings:
    def _settings(self, tmp_path: Path, key: str) -> StreamSpaceSettings:
        for name, value in (("key", key), ("user", "agent-bootstrap"), ("password", "pw")):
            (tmp_path / name).write_text(value + "\n")
            (tmp_path / name).chmod(0o600)
        return StreamSpaceSettings.model_validate(
            {
                "url": "http://127.0.0.1:8000",
                "bootstrapKeyFile": str(tmp_path / "key"),
                "adminUsernameFile": str(tmp_path / "user"),
                "adminPasswordFile": str(tmp_path / "password"),
            }
        )

    @pytest.mark.parametrize("key", ["short", "g" * 64, SHARED_KEY + "0"])
    def test_shared_key_not_64_hex_stops_the_start(self, tmp_path: Path, key: str) -> None:
        """StreamSpace accepts only 64 hex characters as its shared key: anything else is a
        configuration error at start, the file named, the value never shown."""
        with pytest.raises(ControlPlaneUnavailable, match="64 hexadecimal") as info:
            from_settings(
                self._settings(tmp_path, key), budget_seconds=1, request_timeout_seconds=1
            )
        assert key not in str(info.value)

    async def test_well_formed_key(self, tmp_path: Path) -> None:
        """A 64-hex key (a trailing newline in the file is fine) makes the adapter."""
        adapter = from_settings(
            self._settings(tmp_path, SHARED_KEY), budget_seconds=1, request_timeout_seconds=1
        )
        await adapter.close()
