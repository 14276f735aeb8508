"""Registration latency while PostgreSQL hangs (issue 13, item 6).

A TCP proxy in front of PostgreSQL stops relaying (connections stay open: a frozen server or a
partitioned network) while registrations arrive at a fixed rate; each is timed until its answer.
Run twice in one process, interleaved configurations on the same database:

* ``watchdog``: ``databaseStallSeconds`` 0.5 (the default);
* ``no watchdog``: a stall threshold (60 s) beyond the hang, so requests wait out the driver's
  5 s statement timeout, batch after batch: the behaviour before the watchdog.

Prints p50, p99 and max per configuration and the ratio of p99s. Figures on a shared host drift
by 20% and more; the ratio is the figure to quote.

``python -m bench.hung_database_bench [--rate 20] [--seconds 3] [--pg-dsn DSN]`` (default DSN
``$AGENT_BOOTSTRAP_TEST_PG_DSN``; without one it prints that it skipped and exits 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from approver.config import ApproverSettings
from approver.http.app import create_app
from approver.store import Store
from bootstrap_token import KeySet, SigningKey
from tests.approver.helpers import (
    AGENT_ID_PREFIX,
    CLUSTER,
    GENERATE_NAME,
    TRUST,
    Clock,
    mint_token,
    registration_body,
)
from tests.tcp_proxy import TcpProxy

_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _agent(n: int) -> str:
    suffix = "".join(_ALPHABET[(n // len(_ALPHABET) ** k) % len(_ALPHABET)] for k in range(5))
    return f"{AGENT_ID_PREFIX}-{GENERATE_NAME}{suffix}"


async def _one_run(url: str, stall: float, rate: float, seconds: float, first: int) -> list[float]:
    target = sa.make_url(url)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
    via = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    key = SigningKey.generate()
    with tempfile.TemporaryDirectory() as folder:
        jwks = Path(folder) / "jwks.json"
        jwks.write_text(json.dumps(KeySet([key.public_key]).to_jwks()), encoding="utf-8")
        store = Store.open(via, stall_seconds=stall)
        await store.migrate()
        settings = ApproverSettings(
            auto_approve={"enabled": True},
            trust=TRUST,
            token={"jwks_file": jwks, "clusters": [CLUSTER]},
            agent_id_prefix=AGENT_ID_PREFIX,
            database_url=via,
        )
        app = create_app(
            settings,
            key_set=KeySet([key.public_key]),
            store=store,
            clock=Clock(),
            background=False,
        )
        client = TestClient(TestServer(app))
        await client.start_server()
        loop = asyncio.get_running_loop()

        async def register(n: int, delay: float) -> float:
            await asyncio.sleep(delay)
            started = loop.time()
            response = await client.post(
                "/api/v1/agents/register",
                json=registration_body(_agent(n)),
                headers={"X-Agent-API-Key": mint_token(key)},
            )
            await response.read()
            return loop.time() - started

        try:
            await register(first, 0)
            proxy.mode = "freeze"
            count = int(rate * seconds)
            latencies = await asyncio.gather(
                *(register(first + 1 + i, i / rate) for i in range(count))
            )
        finally:
            proxy.mode = "forward"
            await client.close()
            await store.close()
            await proxy.close()
    return sorted(latencies)


def _figures(latencies: list[float]) -> tuple[float, float, float]:
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return statistics.median(latencies), p99, latencies[-1]


async def _main(dsn: str, rate: float, seconds: float) -> None:
    server = sa.make_url(dsn).set(drivername="postgresql+asyncpg")
    name = f"agent_bootstrap_bench_{secrets.token_hex(4)}"
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = server.set(database=name).render_as_string(hide_password=False)
        results: dict[str, tuple[float, float, float]] = {}
        for label, stall, first in (("watchdog", 0.5, 0), ("no watchdog", 60.0, 10_000)):
            results[label] = _figures(await _one_run(url, stall, rate, seconds, first))
        print(f"registrations at {rate:g}/s for {seconds:g} s of a hung PostgreSQL")
        for label, (p50, p99, top) in results.items():
            print(f"  {label:12} p50 {p50:6.3f} s  p99 {p99:6.3f} s  max {top:6.3f} s")
        ratio = results["no watchdog"][1] / results["watchdog"][1]
        print(f"  p99 ratio no watchdog / watchdog: {ratio:.1f}x")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hung_database_bench", description=__doc__
    )
    parser.add_argument("--rate", type=float, default=20.0, help="registrations per second")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of hang under load")
    parser.add_argument("--pg-dsn", default=os.environ.get("AGENT_BOOTSTRAP_TEST_PG_DSN"))
    args = parser.parse_args(argv)
    if not args.pg_dsn:
        print("skipped: needs --pg-dsn or AGENT_BOOTSTRAP_TEST_PG_DSN")
        return 0
    asyncio.run(_main(args.pg_dsn, args.rate, args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
