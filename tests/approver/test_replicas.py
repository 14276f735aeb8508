"""Two real approver processes on one PostgreSQL: 2,000 registrations at once, copied tokens
raced across the replicas. Exactly one agent wins every token, no agent is approved twice, no
row is lost, and the audit chain is one unbroken chain."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import pytest
import sqlalchemy as sa
import yaml

from bootstrap_token import BootstrapClaims, SigningKey, mint, new_jti
from demo.stack import free_port
from tests.conftest import Pki

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "k8s-replicas"
NAMESPACE = "streamspace"
UNIQUE = 1400  #: agents with a token of their own
COPIED = 200  #: tokens presented by two different agents at once (one per replica)
TWINS = 100  #: agents sending the same registration to both replicas at once


def _token(key: SigningKey, replicaset: str, now: int) -> str:
    claims = BootstrapClaims.model_validate(
        {
            "iss": "agent-bootstrap-webhook",
            "aud": "agent-approver",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "jti": new_jti(),
            "cluster": "replicas",
            "namespace": NAMESPACE,
            "serviceAccount": "streamspace-agent",
            "pod": {"generateName": replicaset + "-"},
            "owner": {"kind": "ReplicaSet", "name": replicaset, "uid": str(uuid.uuid4())},
            "admissionUid": str(uuid.uuid4()),
        }
    )
    return mint(claims, key, now=now)


def _body(agent_id: str) -> dict[str, Any]:
    return {
        "agentId": agent_id,
        "platform": "kubernetes",
        "region": "default",
        "capacity": {"maxCpu": 100, "maxMemory": 128, "maxSessions": 100},
        "metadata": {"namespace": NAMESPACE, "kubernetes": True},
    }


def _script() -> str:
    candidate = Path(sys.executable).parent / "agent-bootstrap-approver"
    return str(candidate) if candidate.exists() else "agent-bootstrap-approver"


@pytest.fixture
def replicas(pki: Pki, pg_url: str, tmp_path: Path) -> Iterator[list[int]]:
    """Two `agent-bootstrap-approver` processes on the test's PostgreSQL database."""
    procs: list[subprocess.Popen[bytes]] = []
    ports = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_BOOTSTRAP_APPROVER_")}
    try:
        for n in range(2):
            port = free_port()
            config = tmp_path / f"approver-{n}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "autoApprove": {"enabled": True},
                        "trust": {"namespaces": [NAMESPACE]},
                        "token": {"jwksFile": str(pki.jwks), "clusters": ["replicas"]},
                        "agentIdPrefix": PREFIX,
                        "databaseUrl": pg_url,
                        "tlsCertFile": str(pki.approver_cert),
                        "tlsKeyFile": str(pki.approver_key),
                        "host": "127.0.0.1",
                        "port": port,
                    }
                )
            )
            log = (tmp_path / f"approver-{n}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [_script(), "--config", str(config)],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            ports.append(port)
        yield ports
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _ready(session: aiohttp.ClientSession, port: int, context: ssl.SSLContext) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            async with session.get(f"https://localhost:{port}/readyz", ssl=context) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"approver on port {port} did not become ready")
        await asyncio.sleep(0.1)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as s:
        yield s


@pytest.mark.postgres
async def test_two_replicas_two_thousand_registrations(
    replicas: list[int],
    session: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    pki: Pki,
    pg_url: str,
) -> None:
    """2,000 registrations at once over two real processes: the database decides every race."""
    for port in replicas:
        await _ready(session, port, client_ssl)
    key = SigningKey.from_file(pki.signing_key)
    now = int(time.time())
    replicaset = f"streamspace-k8s-agent-{secrets.token_hex(4)}"

    def agent() -> str:
        return f"{PREFIX}-{replicaset}-{secrets.token_hex(5)}"

    attempts: collections.Counter[str] = collections.Counter()

    async def register(port: int, agent_id: str, token: str) -> dict[str, Any]:
        while True:  # like StreamSpace's agent: a 503 is retried (after Retry-After, here 0.1 s)
            attempts[agent_id] += 1
            async with session.post(
                f"https://localhost:{port}/api/v1/agents/register",
                json=_body(agent_id),
                headers={"X-Agent-API-Key": token},
                ssl=client_ssl,
            ) as response:
                body: dict[str, Any] = await response.json()
                if response.status != 503:
                    body["_status"] = response.status
                    return body
            await asyncio.sleep(0.1)

    unique = [(agent(), _token(key, replicaset, now)) for _ in range(UNIQUE)]
    copied = [(agent(), agent(), _token(key, replicaset, now)) for _ in range(COPIED)]
    twins = [(agent(), _token(key, replicaset, now)) for _ in range(TWINS)]
    calls = [register(replicas[n % 2], a, t) for n, (a, t) in enumerate(unique)]
    calls += [
        c for a, b, t in copied for c in (register(replicas[0], a, t), register(replicas[1], b, t))
    ]
    calls += [
        c for a, t in twins for c in (register(replicas[0], a, t), register(replicas[1], a, t))
    ]
    assert len(calls) == 2000
    answers = await asyncio.gather(*calls)

    unique_answers = answers[:UNIQUE]
    copied_answers = answers[UNIQUE : UNIQUE + 2 * COPIED]
    twin_answers = answers[UNIQUE + 2 * COPIED :]
    twin_keys: dict[str, set[str]] = {}
    assert {a["_status"] for a in unique_answers} == {200}
    for first, second in zip(copied_answers[::2], copied_answers[1::2], strict=True):
        assert sorted((first["_status"], second["_status"])) == [200, 403]
        loser = first if first["_status"] == 403 else second
        assert loser["reason"] == "token_reused"
    for first, second in zip(twin_answers[::2], twin_answers[1::2], strict=True):
        assert (first["_status"], second["_status"]) == (200, 200)
        assert first["id"] == second["id"]
        # Both presented the token: each got a key, the later replacing the earlier.
        assert first["apiKey"] != second["apiKey"]
        twin_keys[first["agentId"]] = {first["apiKey"], second["apiKey"]}

    expected_agents = UNIQUE + COPIED + TWINS
    approved_ids = {a["id"] for a in answers if a["_status"] == 200}
    dsn = sa.make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id::text, agent_id, status, jti, api_key_hash FROM agents")
        uses = await conn.fetch("SELECT jti, agent_id FROM token_uses")
        events = dict(
            await conn.fetch(
                "SELECT decision, count(*) FROM audit_events WHERE event = 'agent.register' "
                "GROUP BY decision"
            )
        )
    finally:
        await conn.close()
    assert len(rows) == expected_agents
    assert {r["status"] for r in rows} == {"active"}
    assert {str(uuid.UUID(i)) for i in approved_ids} == {r["id"] for r in rows}
    jtis = [r["jti"] for r in rows]
    assert len(set(jtis)) == expected_agents  # every approved agent has its own token
    assert len(uses) == expected_agents
    assert {u["jti"]: u["agent_id"] for u in uses} == {r["jti"]: r["agent_id"] for r in rows}
    assert all(r["api_key_hash"] for r in rows)
    hashes = {r["agent_id"]: r["api_key_hash"] for r in rows}
    for agent_id, keys in twin_keys.items():
        assert hashes[agent_id] in {hashlib.sha256(k.encode()).hexdigest() for k in keys}
    # Every approval is stored; refusals change nothing, so they are stored sampled (at most
    # one per reason and source per 10 s per replica; approver.audit.sampling), never all.
    refused = sum(a["_status"] == 403 for a in answers)
    assert events["approved"] == sum(a["_status"] == 200 for a in answers)
    assert 1 <= events["rejected"] <= min(refused, 2 * 100)
    assert set(events) == {"approved", "rejected"}

    done = await asyncio.create_subprocess_exec(
        _script(),
        "audit",
        "verify",
        env={
            **{
                k: v for k, v in os.environ.items() if not k.startswith("AGENT_BOOTSTRAP_APPROVER_")
            },
            "AGENT_BOOTSTRAP_APPROVER_DATABASE_URL": pg_url,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await done.communicate()
    assert done.returncode == 0, (out, err)
    assert b"audit chain intact" in out
