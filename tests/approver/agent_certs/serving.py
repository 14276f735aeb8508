"""A running approver with agent certificates on, for the real-TLS tests: seeded agents, an
agent CA on disk, clients with and without client certificates."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from approver.config import ApproverSettings
from approver.domain.agent_keys import key_digest, new_agent_key
from approver.domain.records import AgentStatus
from approver.serve import serve
from approver.store import Store
from demo.stack import free_port
from tests.approver.agent_certs.pki import (
    CaFiles,
    PrivateKey,
    client_context,
    csr_pem,
    new_key,
    write_ca,
)
from tests.approver.helpers import agent_record
from tests.conftest import Pki

ADMIN = "alice-admin-token-0123456789"
LIFETIME = 600


@dataclass
class Agent:
    agent_id: str
    key: str


@dataclass
class Served:
    """A running approver with agent certificates on."""

    port: int
    pki: Pki
    ca: CaFiles
    folder: Path
    agents: dict[str, Agent]

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def context(self, cert_pem: str | bytes | None = None, key: PrivateKey | None = None) -> Any:
        return client_context(self.pki.ca_cert, cert_pem, key, self.folder / "clients")


AGENTS = {
    "a": ("k8s-prod-agent-aaaa", AgentStatus.ACTIVE),
    "b": ("k8s-prod-agent-bbbb", AgentStatus.ACTIVE),
    "gone": ("k8s-prod-agent-gone", AgentStatus.INACTIVE),
}


async def _seed(url: str) -> dict[str, Agent]:
    store = Store.open(url)
    agents: dict[str, Agent] = {}
    try:
        await store.migrate()
        async with store.transaction() as tx:
            for name, (agent_id, status) in AGENTS.items():
                key = new_agent_key()
                await tx.insert_agent(
                    agent_record(
                        status,
                        id=uuid.uuid4(),
                        agent_id=agent_id,
                        cluster="prod",
                        namespace="streamspace",
                        pod_name=agent_id.removeprefix("k8s-prod-"),
                        api_key_hash=key_digest(key),
                        reason="approved_by_admin"
                        if status is AgentStatus.ACTIVE
                        else "pod_deleted",
                    )
                )
                agents[name] = Agent(agent_id, key)
    finally:
        await store.close()
    return agents


async def _wait_serving(port: int, context: ssl.SSLContext, server: asyncio.Task[None]) -> None:
    deadline = time.monotonic() + 15
    while True:
        if server.done():
            server.result()
        try:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="localhost"
            )
        except OSError:
            assert time.monotonic() < deadline, "the approver did not start"
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return


@contextlib.asynccontextmanager
async def running_approver(
    database_url: str,
    pki: Pki,
    folder: Path,
    *,
    ca: CaFiles | None = None,
    trust_bundle: Path | None = None,
    min_reissue_seconds: int = 0,
) -> AsyncIterator[Served]:
    """An approver serving HTTPS on a free port with agent certificates on (its agent CA
    ``ca``, default a new one; ``trust_bundle`` as ``trustBundleFile``), agents seeded."""
    agents = await _seed(database_url)
    ca = ca or write_ca(folder / "agent-ca")
    admin = folder / "admin-tokens"
    admin.write_text(f"alice:{ADMIN}\n", encoding="utf-8")
    admin.chmod(0o600)
    settings = ApproverSettings(
        database_url=database_url,
        tls_cert_file=pki.approver_cert,
        tls_key_file=pki.approver_key,
        tls_reload_interval_seconds=0.05,
        admin_tokens_file=admin,
        host="127.0.0.1",
        port=free_port(),
        metrics_port=0,
        agent_certificates={
            "enabled": True,
            "ca_cert_file": ca.cert,
            "ca_key_file": ca.key,
            "trust_bundle_file": trust_bundle,
            "lifetime_seconds": LIFETIME,
            # 0: the tests issue several certificates to one agent in a row; the limit has its
            # own test (test_tls.py, TestRateLimit).
            "min_reissue_seconds": min_reissue_seconds,
        },
    )
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop=stop))
    running = Served(settings.port, pki, ca, folder, agents)
    try:
        await _wait_serving(settings.port, running.context(), server)
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=10)


@pytest.fixture
async def served(database_url: str, pki: Pki, tmp_path: Path) -> AsyncIterator[Served]:
    async with running_approver(database_url, pki, tmp_path) as running:
        yield running


async def call(
    served: Served,
    method: str,
    path: str,
    *,
    context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
    json: Any = None,
) -> tuple[int, Any]:
    connector = aiohttp.TCPConnector(ssl=context or served.context())
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.request(method, served.url + path, headers=headers, json=json) as answer,
    ):
        if answer.content_type == "application/json":
            return answer.status, await answer.json()
        return answer.status, await answer.read()


async def request_certificate(
    served: Served,
    agent_id: str,
    key: PrivateKey,
    *,
    api_key: str | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    headers = {"X-Agent-API-Key": api_key} if api_key else {}
    return await call(
        served,
        "POST",
        f"/api/v1/agents/{agent_id}/certificate",
        context=context,
        headers=headers,
        json={"csr": csr_pem(key)},
    )


async def obtain(served: Served, name: str = "a") -> tuple[dict[str, Any], PrivateKey]:
    """A certificate for agent ``name``, requested with its key."""
    agent = served.agents[name]
    key = new_key()
    status, body = await request_certificate(served, agent.agent_id, key, api_key=agent.key)
    assert status == 200, body
    return body, key


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}
