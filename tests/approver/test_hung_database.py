"""Issue 13, item 6: a hung PostgreSQL (a TCP proxy that stops relaying, connections kept open)
fails fast. Registrations are answered ``202 pending`` + ``Retry-After`` within about
``databaseStallSeconds`` (before: each write batch waited the 5 s statement timeout, one after
another), nothing of them is written, ``/readyz`` says 503 at once, and service comes back
without a restart when the database answers again.

The latency percentiles at 20 registrations/s are printed by ``bench/hung_database.py``; this
test asserts only the bound that separates failing fast from waiting out the timeout."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from approver.http.app import create_app
from approver.store import Store
from bootstrap_token import KeySet, SigningKey
from tests.approver.helpers import (
    AGENT_ID_PREFIX,
    GENERATE_NAME,
    Clock,
    RecordingSink,
    mint_token,
    registration_body,
    settings,
)
from tests.tcp_proxy import TcpProxy

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]
REGISTER = "/api/v1/agents/register"
STALL = 0.5
#: Registrations sent while the database hangs: 2 s at 20 per second.
FROZEN = 40
#: Kubernetes' pod-name suffix alphabet (apimachinery's rand.String).
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def agent_id(n: int) -> str:
    suffix = "".join(_ALPHABET[(n // len(_ALPHABET) ** k) % len(_ALPHABET)] for k in range(5))
    return f"{AGENT_ID_PREFIX}-{GENERATE_NAME}{suffix}"


@pytest.fixture
async def proxied(pg_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    target = sa.make_url(pg_url)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
    try:
        url = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        yield proxy, url
    finally:
        await proxy.close()


@pytest.mark.postgres
@pytest.mark.parametrize("batch", [64, 1], ids=["group-commit", "writeBatchSize-1"])
async def test_hung_database_fails_fast_and_recovers(
    aiohttp_client: ClientFactory,
    proxied: tuple[TcpProxy, str],
    jwks_file: Path,
    key_set: KeySet,
    signing_key: SigningKey,
    batch: int,
) -> None:
    proxy, url = proxied
    store = Store.open(url, stall_seconds=STALL)
    await store.migrate()
    approver_settings = settings(
        jwks_file=jwks_file, database_url=url, write_batch_size=batch, retry_after_seconds=5
    )
    app = create_app(
        approver_settings,
        key_set=key_set,
        store=store,
        clock=Clock(),
        audit=RecordingSink(),
        background=False,
    )
    client = await aiohttp_client(app)
    loop = asyncio.get_running_loop()

    async def register(n: int, delay: float = 0.0) -> tuple[int, str, str | None, float]:
        await asyncio.sleep(delay)
        started = loop.time()
        response = await client.post(
            REGISTER,
            json=registration_body(agent_id(n)),
            headers={"X-Agent-API-Key": mint_token(signing_key)},
        )
        body = await response.json()
        elapsed = loop.time() - started
        return response.status, body["reason"], response.headers.get("Retry-After"), elapsed

    async def readyz() -> tuple[int, float]:
        started = loop.time()
        response = await client.get("/readyz")
        return response.status, loop.time() - started

    try:
        assert (await register(0))[:2] == (200, "bootstrap_token_accepted")
        assert (await readyz())[0] == 200

        proxy.mode = "freeze"
        frozen = await asyncio.gather(*(register(n, (n - 1) * 0.05) for n in range(1, FROZEN + 1)))
        ready_status, ready_elapsed = await readyz()

        # Every registration answered in a form StreamSpace's agent survives, and fast.
        assert {(s, r, a) for s, r, a, _ in frozen} == {(202, "store_unavailable", "5")}
        latencies = sorted(e for *_, e in frozen)
        assert latencies[-1] < STALL * 3, latencies  # the statement timeout is 5 s
        assert statistics.median(latencies) < STALL, latencies
        assert (ready_status, ready_elapsed < STALL * 2) == (503, True)
        assert store.health.trips == 1

        proxy.mode = "forward"
        for _ in range(100):
            if (await readyz())[0] == 200:
                break
            await asyncio.sleep(0.1)
        assert (await readyz())[0] == 200
        # Nothing of the registrations answered during the hang was written.
        for n in range(1, FROZEN + 1):
            assert await store.get_agent(agent_id(n)) is None
        # And registrations are approved again, without a restart.
        assert (await register(FROZEN + 1))[:2] == (200, "bootstrap_token_accepted")
    finally:
        proxy.mode = "forward"
        await store.close()
