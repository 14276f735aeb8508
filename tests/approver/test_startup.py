"""Hardening issue item 8: an approver started before its database waits for it (with backoff,
not ready, saying what it waits for) instead of exiting, answers agents in a form they survive,
and serves once the database is there, over real TLS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from approver import startup
from approver.config import ApproverSettings
from approver.serve import serve
from bootstrap_token import SigningKey
from demo.stack import free_port
from tests.approver.helpers import (
    AGENT_ID_PREFIX,
    CLUSTER,
    TRUST,
    mint_token,
    registration_body,
)
from tests.conftest import Pki
from tests.tcp_proxy import TcpProxy


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(startup, "FIRST_DELAY_SECONDS", 0.1)
    monkeypatch.setattr(startup, "MAX_DELAY_SECONDS", 0.4)


def settings_for(pki: Pki, database_url: str) -> ApproverSettings:
    return ApproverSettings(
        auto_approve={"enabled": True},
        trust=TRUST,
        token={"jwks_file": pki.jwks, "clusters": [CLUSTER]},
        agent_id_prefix=AGENT_ID_PREFIX,
        database_url=database_url,
        tls_cert_file=pki.approver_cert,
        tls_key_file=pki.approver_key,
        host="127.0.0.1",
        port=free_port(),
    )


@contextlib.asynccontextmanager
async def running(settings: ApproverSettings) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop=stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def get(session: aiohttp.ClientSession, url: str, context: ssl.SSLContext) -> tuple[int, str]:
    async with session.get(url, ssl=context) as response:
        return response.status, await response.text()


async def until(
    session: aiohttp.ClientSession,
    url: str,
    context: ssl.SSLContext,
    status: int,
    task: asyncio.Task[None],
) -> str:
    deadline = time.monotonic() + 15
    while True:
        if task.done():
            task.result()
            pytest.fail("serve() ended while waiting")
        with contextlib.suppress(aiohttp.ClientConnectionError):
            got, text = await get(session, url, context)
            if got == status:
                return text
        assert time.monotonic() < deadline, f"{url} never answered {status}"
        await asyncio.sleep(0.05)


async def register(
    session: aiohttp.ClientSession, base: str, token: str, context: ssl.SSLContext
) -> tuple[int, dict[str, str], dict[str, object]]:
    async with session.post(
        f"{base}/api/v1/agents/register",
        json=registration_body(),
        headers={"X-Agent-API-Key": token},
        ssl=context,
    ) as response:
        return response.status, dict(response.headers), await response.json()


async def waits_then_serves(
    settings: ApproverSettings,
    pki: Pki,
    client_ssl: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    make_reachable: object,
) -> None:
    base = f"https://localhost:{settings.port}"
    token = mint_token(SigningKey.from_file(pki.signing_key), now=int(time.time()))
    caplog.set_level(logging.INFO)
    async with running(settings) as task, aiohttp.ClientSession() as session:
        await until(session, f"{base}/healthz", client_ssl, 200, task)
        assert await until(session, f"{base}/readyz", client_ssl, 503, task) == (
            "not ready: waiting for the database"
        )
        status, headers, body = await register(session, base, token, client_ssl)
        assert status == 202
        assert int(headers["Retry-After"]) >= 1
        assert (body["approvalStatus"], body["reason"]) == ("pending", "store_unavailable")
        async with session.get(f"{base}/api/v1/admin/agents", ssl=client_ssl) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == str(settings.retry_after_seconds)
        await asyncio.sleep(0.5)  # a few attempts, with backoff
        waits = [
            r.getMessage() for r in caplog.records if "waiting for the database" in r.getMessage()
        ]
        assert len(waits) >= 2
        assert all(
            r.levelno == logging.WARNING for r in caplog.records if "waiting for" in r.getMessage()
        )
        assert sa.make_url(settings.database_url).render_as_string() in waits[0]
        assert not task.done()  # it did not exit

        assert callable(make_reachable)
        make_reachable()
        await until(session, f"{base}/readyz", client_ssl, 200, task)
        status, _, body = await register(session, base, token, client_ssl)
        assert (status, body["status"]) == (200, "active")  # nothing was written while waiting
    assert any("reachable after" in r.getMessage() for r in caplog.records)


async def test_sqlite_not_there_yet(
    tmp_path: Path, pki: Pki, client_ssl: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    """The SQLite file's folder (a volume) appears after start."""
    folder = tmp_path / "volume"
    settings = settings_for(pki, f"sqlite+aiosqlite:///{folder / 'approver.db'}")
    await waits_then_serves(settings, pki, client_ssl, caplog, folder.mkdir)


@pytest.mark.postgres
async def test_postgresql_down_at_start(
    pg_url: str, pki: Pki, client_ssl: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL refuses connections at start (a proxy in ``refuse`` mode), then comes up."""
    target = sa.make_url(pg_url)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5432, mode="refuse").start()
    try:
        url = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        settings = settings_for(pki, url)

        def come_up() -> None:
            proxy.mode = "forward"

        await waits_then_serves(settings, pki, client_ssl, caplog, come_up)
    finally:
        await proxy.close()


async def test_stop_while_waiting_ends_at_once(tmp_path: Path, pki: Pki) -> None:
    settings = settings_for(pki, f"sqlite+aiosqlite:///{tmp_path / 'never' / 'a.db'}")
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop=stop))
    await asyncio.sleep(0.3)
    assert not task.done()
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert task.exception() is None
    assert time.monotonic() - started < 1
