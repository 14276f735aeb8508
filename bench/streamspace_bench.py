"""HPA burst through the whole path: N agent pods of StreamSpace's Deployment created at once,
each stamped by the webhook, stored, its unmodified agent (the stand-in) registering through the
approver, approved *in StreamSpace* (the stand-in's own records) and its WebSocket open there.

Prints, per configuration: time from the first pod creation until every agent is connected, the
per-agent time (pod creation -> WebSocket open) p50/p99, and the work StreamSpace did (its
requests by route). StreamSpace's bcrypt cost is a parameter: 4 (about 1 ms a hash here, "made
cheap") by default; ``--bcrypt-cost 12`` is StreamSpace's own (about 220 ms a hash here).

Each pod has its own loopback address (127.0.x.y) that its agent connects from, as in a cluster:
the approver binds tokens to it, and StreamSpace's per-client rate limit (60/min,
``agentRateLimit``) sees one client per pod.

Run: ``.venv/bin/python -m bench.streamspace_bench [--agents 1000] [--pg-dsn DSN]``. With a DSN,
the PostgreSQL run uses two approver processes (agents spread over them, as a Service would).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from demo.world import World
from tests.streamspace.agent import K8sAgentStandIn

DEFAULT_AGENTS = 1000
ADMISSION_CONCURRENCY = 64


async def burst(world: World, agents: int, *, limit_seconds: float) -> dict[str, float]:
    """Create ``agents`` pods at once and run their agents until all are connected."""
    started: dict[int, float] = {}
    connected: dict[int, float] = {}
    running: list[K8sAgentStandIn] = []
    tasks: list[asyncio.Task[None]] = []
    urls = [u.replace("https://", "wss://") for u in world.stack.approver_urls]
    deployments = [world.deployment_for(url) for url in urls]
    gate = asyncio.Semaphore(ADMISSION_CONCURRENCY)

    async def one(n: int, session: aiohttp.ClientSession) -> None:
        async with gate:
            started[n] = time.monotonic()
            pod = await world.create_pod(session, deployment=deployments[n % len(urls)])
        agent = world.agent(pod, pending_retry_seconds=1.0, heartbeat_interval=30.0)
        running.append(agent)
        task = asyncio.create_task(agent.run())
        tasks.append(task)
        await agent.connected.wait()
        connected[n] = time.monotonic()

    t0 = time.monotonic()
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=ADMISSION_CONCURRENCY)
        ) as session:
            await asyncio.wait_for(
                asyncio.gather(*(one(n, session) for n in range(agents))), timeout=limit_seconds
            )
        total = time.monotonic() - t0
    finally:
        for agent in running:
            await agent.stop()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
    per_agent = sorted(connected[n] - started[n] for n in connected)
    return {
        "total_s": total,
        "p50_ms": statistics.median(per_agent) * 1000,
        "p99_ms": per_agent[max(0, int(len(per_agent) * 0.99) - 1)] * 1000,
        "connected": float(len(connected)),
    }


async def run_one(
    label: str,
    *,
    agents: int,
    database_url: str | None,
    approvers: int,
    bcrypt_cost: int,
    limit_seconds: float,
    streamspace_tls: bool,
) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="agent-bootstrap-burst-"))
    world = World(
        work,
        database_url=database_url,
        quiet=True,
        bcrypt_cost=bcrypt_cost,
        approvers=approvers,
        sync_seconds=5.0,
        streamspace_tls=streamspace_tls,
    )
    async with world:
        before = _cpu(world)
        figures = await burst(world, agents, limit_seconds=limit_seconds)
        after = _cpu(world)
        listed = await world.streamspace_agents()
        approved = sum(1 for a in listed.values() if a["approvalStatus"] == "approved")
        routes = Counter(_route(r.method, r.path) for r in world.streamspace.requests)
    figures["approved_in_streamspace"] = float(approved)
    print(
        f"{label:34} {figures['total_s']:6.2f} s   p50 {figures['p50_ms']:7.0f} ms   "
        f"p99 {figures['p99_ms']:7.0f} ms   connected {figures['connected']:.0f}/{agents}   "
        f"approved there {approved}"
    )
    print(f"{'':34} StreamSpace requests: {dict(routes)}")
    spent = {name: after[name] - before[name] for name in after}
    print(
        f"{'':34} CPU seconds: "
        + ", ".join(f"{name} {value:.2f}" for name, value in sorted(spent.items()))
    )
    return figures


def _route(method: str, path: str) -> str:
    """A request by its route pattern (agent ids folded into ``:id``)."""
    parts = path.split("/")
    if len(parts) > 5 and parts[3] == "admin":
        parts[5] = ":id"
    return f"{method} {'/'.join(parts)}"


def _cpu(world: World) -> dict[str, float]:
    """CPU seconds (user + system) so far: each service process, and this process (the
    StreamSpace and Kubernetes stand-ins and every agent)."""
    ticks = os.sysconf("SC_CLK_TCK")
    spent = {}
    for name, proc in world.stack.procs.items():
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        spent[name] = (int(fields[11]) + int(fields[12])) / ticks
    usage = resource.getrusage(resource.RUSAGE_SELF)
    spent["stand-ins+agents"] = usage.ru_utime + usage.ru_stime
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streamspace_bench")
    parser.add_argument("--agents", type=int, default=DEFAULT_AGENTS)
    parser.add_argument("--bcrypt-cost", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--pg-dsn", default=os.environ.get("AGENT_BOOTSTRAP_TEST_PG_DSN"))
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument(
        "--streamspace-tls",
        action="store_true",
        help="serve StreamSpace's stand-in over HTTPS (default: plain HTTP, as its chart does)",
    )
    args = parser.parse_args(argv)
    print(f"HPA burst of {args.agents} agent pods, StreamSpace bcrypt cost {args.bcrypt_cost}")
    if not args.skip_sqlite:
        asyncio.run(
            run_one(
                "SQLite, 1 approver",
                agents=args.agents,
                database_url=None,
                approvers=1,
                bcrypt_cost=args.bcrypt_cost,
                limit_seconds=args.timeout,
                streamspace_tls=args.streamspace_tls,
            )
        )
    if args.pg_dsn:
        from tests.integration.test_streamspace import _drop_pg, _fresh_pg_url

        url = asyncio.run(_fresh_pg_url(args.pg_dsn))
        asyncio.run(
            run_one(
                "PostgreSQL, 2 approvers",
                agents=args.agents,
                database_url=url,
                approvers=2,
                bcrypt_cost=args.bcrypt_cost,
                limit_seconds=args.timeout,
                streamspace_tls=args.streamspace_tls,
            )
        )
        asyncio.run(_drop_pg(args.pg_dsn, url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
