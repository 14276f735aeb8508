"""Agent client certificates through StreamSpace (issue 16): StreamSpace's (stand-in) API and
unmodified agent, the webhook injecting the agent proxy, the approver issuing certificates and
checking them at its gate, all over real TLS (:class:`demo.world.World`, ``agent_certificates``
and ``requireAtGate``).

What counts is where the agent works: StreamSpace's own list and WebSocket hub.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from demo.world import PROXY_CONTAINER, PROXY_OPT_IN, RunningProxy, World
from tests.approver.agent_certs.pki import PrivateKey, csr_pem, key_pem, new_key
from tests.integration.test_streamspace import eventually, running

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path, quiet=True, agent_certificates=True, require_certificates=True)
    await w.start()
    try:
        yield w
    finally:
        codes = await w.stop()
        assert codes == {"webhook": 0, "approver": 0}, w.stack.log("approver")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def held(proxy: RunningProxy) -> x509.Certificate:
    return x509.load_pem_x509_certificate((proxy.settings.state_dir / "tls.crt").read_bytes())


def mtls(world: World, proxy: RunningProxy) -> ssl.SSLContext:
    """A client context presenting ``proxy``'s certificate (as an attacker holding it would)."""
    context = ssl.create_default_context(cafile=str(world.stack.pki / "ca.crt"))
    state = proxy.settings.state_dir
    context.load_cert_chain(state / "tls.crt", state / "tls.key")
    return context


async def dial(world: World, agent_id: str, key: str, context: ssl.SSLContext | None) -> int:
    """A WebSocket dial at the gate: 101, or the refusal's status."""
    url = f"{world.stack.approver_url}/api/v1/agents/connect?agent_id={agent_id}"
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(
                url, headers={"X-Agent-API-Key": key}, ssl=context or world.client_ssl
            )
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101


async def test_agent_through_the_proxy(world: World, session: aiohttp.ClientSession) -> None:
    """The webhook injects the proxy into the opted-in pod; StreamSpace's unmodified agent,
    pointed at it, is approved in StreamSpace's list and its WebSocket opens there, with the
    certificate the proxy obtained in the handshake. Without the certificate, its key alone is
    refused (requireAtGate); with another agent's certificate, too; a revoked certificate is
    refused, and the proxy enrolls again by itself."""
    pod = await world.create_pod(session, annotations=PROXY_OPT_IN)
    names = [c["name"] for c in pod.manifest["spec"]["initContainers"]]
    assert names == [PROXY_CONTAINER]
    proxy = await world.start_proxy(pod)
    agent = world.agent(pod, proxy=proxy, heartbeat_interval=0.2)
    agent_id = world.agent_id(pod)
    async with running(agent):
        await world.streamspace.wait_connected(agent_id, timeout=15)
        listed = (await world.streamspace_agents())[agent_id]
        assert listed["approvalStatus"] == "approved"
        first = held(proxy)
        status, certificates = await world.approver_admin("GET", f"/agents/{agent_id}/certificates")
        assert status == 200
        assert [c["serial"] for c in certificates["certificates"]] == [
            format(first.serial_number, "x")
        ]
        messages = await world.streamspace.received_messages(agent_id, count=1)
        assert messages[0]["type"] == "heartbeat"  # through proxy and gate

        # the key alone: refused; the key with the certificate: through
        assert await dial(world, agent_id, agent.api_key, None) == 401
        assert await dial(world, agent_id, agent.api_key, mtls(world, proxy)) == 101
        await world.streamspace.wait_connected(agent_id, timeout=15)  # the agent's again

        # another agent's certificate with this agent's key: refused
        other_pod = await world.create_pod(session, annotations=PROXY_OPT_IN)
        other_proxy = await world.start_proxy(other_pod)
        other = world.agent(other_pod, proxy=other_proxy)
        async with running(other):
            await world.streamspace.wait_connected(world.agent_id(other_pod), timeout=15)
            assert await dial(world, agent_id, agent.api_key, mtls(world, other_proxy)) == 403

        # revoke the agent's certificate: the open WebSocket is closed, the certificate is
        # refused, and the proxy enrolls again with the agent's key on its reconnect
        serial = format(first.serial_number, "x")
        status, _ = await world.approver_admin("POST", f"/agent-certificates/{serial}/revoke")
        assert status == 200
        old_context = mtls(world, proxy)  # (files replaced by the new enrollment below)

        async def renewed() -> bool:
            try:  # the refused certificate's files are removed before the new ones are written
                return held(proxy).serial_number != first.serial_number
            except FileNotFoundError:
                return False

        await eventually(renewed, within=15)
        await world.streamspace.wait_connected(agent_id, timeout=15)
        assert await dial(world, agent_id, agent.api_key, old_context) == 403
        _, certificates = await world.approver_admin("GET", f"/agents/{agent_id}/certificates")
        assert [c["revokedReason"] for c in certificates["certificates"]] == ["revoked", None]


async def test_pod_without_the_opt_in_gets_no_proxy(
    world: World, session: aiohttp.ClientSession
) -> None:
    """Stamped but not opted in: no sidecar, its agent's URL untouched (the gate, which requires
    certificates here, then refuses its WebSocket: the admin chose requireAtGate)."""
    pod = await world.create_pod(session)
    assert "initContainers" not in pod.manifest["spec"]
    assert world.env(pod)["CONTROL_PLANE_URL"] == world.gate_url
    agent = world.agent(pod)
    agent_id = world.agent_id(pod)
    async with running(agent):

        async def approved() -> bool:
            row = (await world.streamspace_agents()).get(agent_id)
            return row is not None and row["approvalStatus"] == "approved"

        await eventually(approved, within=15)
        await asyncio.sleep(0.5)
        assert agent_id not in world.streamspace.connected_agents()


async def test_removed_in_streamspace_ends_its_certificates_for_good(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """StreamSpace's administrator deletes the agent there; its next registration finds it gone
    (403 removed_in_control_plane) before the sync does: its certificate is revoked then, and
    stays revoked after an approval on the approver's side."""
    world = World(tmp_path, quiet=True, agent_certificates=True, sync_seconds=60.0)
    await world.start()
    try:
        pod = await world.create_pod(session)
        env, agent_id = world.env(pod), world.agent_id(pod)
        status, body, _ = await world.register_once(env, source=pod.address)
        assert status == 200
        key = new_key()
        status, issued = await _certificate(world, agent_id, key, api_key=body["apiKey"])
        assert status == 200, issued
        status, _ = await world.streamspace_admin("DELETE", f"/agents/{agent_id}")
        assert status == 200
        status, body, _ = await world.register_once(env, source=pod.address)
        assert (status, body["reason"]) == (403, "removed_in_control_plane")
        _, listed = await world.approver_admin("GET", f"/agents/{agent_id}/certificates")
        assert [c["revokedReason"] for c in listed["certificates"]] == ["agent_inactive"]
        status, _ = await world.approver_admin("POST", f"/agents/{agent_id}/approve")
        assert status == 200
        old = ssl.create_default_context(cafile=str(world.stack.pki / "ca.crt"))
        (tmp_path / "old.crt").write_text(issued["certificate"])
        (tmp_path / "old.key").write_bytes(key_pem(key))
        old.load_cert_chain(tmp_path / "old.crt", tmp_path / "old.key")
        status, answer = await _certificate(world, agent_id, new_key(), context=old)
        assert (status, answer["error"]) == (403, "certificate_not_live")
    finally:
        codes = await world.stop()
    assert codes == {"webhook": 0, "approver": 0}


async def _certificate(
    world: World,
    agent_id: str,
    key: PrivateKey,
    *,
    api_key: str | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{world.stack.approver_url}/api/v1/agents/{agent_id}/certificate",
            json={"csr": csr_pem(key)},
            headers={"X-Agent-API-Key": api_key} if api_key else {},
            ssl=context or world.client_ssl,
        ) as answer,
    ):
        return answer.status, await answer.json()
