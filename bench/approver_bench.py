"""Approver registrations: throughput, latency and an HPA burst, on SQLite and PostgreSQL.

``python -m bench.approver_bench [--duration S] [--steps a,b] [--pg-dsn URL] [--json PATH]``

Every step starts real ``agent-bootstrap-approver`` processes (HTTPS on 127.0.0.1, auto-approval
on, audit JSON lines through the real logging handler to a file) on a fresh database, and
registers StreamSpace agents, each with its own valid bootstrap token (minted up front with the
PKI's signing key), exactly as the k8s-agent sends them (``X-Agent-API-Key``, same body). Every
registration is a first registration: a new agent, a new ``jti`` to burn, a new record, a new
per-agent API key, an audit event appended to the hash chain, one transaction.

Steps:

* ``sqlite-1p`` / ``pg-1p``: one process. ``wrk`` (keep-alive, ``--connections``) for
  ``--duration`` seconds: registrations/s, and the server's CPU per registration
  (utime+stime from ``/proc``); then a fixed-rate run (``--rate``/s, Python client, keep-alive)
  for p50/p99 of one round trip.
* ``pg-2p``: two processes on one PostgreSQL database, one ``wrk`` per process at once:
  total registrations/s.
* ``burst-sqlite`` / ``burst-pg``: an HPA burst: ``--burst`` agents register at once, each on its
  own TLS connection (as pods do); time from the first request until every agent is active
  (every answer 200, and the database agrees), p50/p99 of the answers.
* ``floor``: the same wrk load against a bare aiohttp handler over the same TLS that reads the
  body and answers a fixed 200: the machine's ceiling for "one HTTPS request", for ratios.

After each step the database is checked: as many active agents as 200 answers, and the audit
chain verifies (``agent-bootstrap-approver audit verify``). The figures go to stdout as a table;
``--json`` writes them too. Host noise on these machines is about +-20%: compare with the floor
of the same run.

PostgreSQL steps need ``--pg-dsn`` (default ``$AGENT_BOOTSTRAP_TEST_PG_DSN``); each creates and
drops a database of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from demo.stack import free_port

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PREFIX = "k8s-bench"
NAMESPACE = "streamspace"
CLUSTER = "bench"
ALL_STEPS = ("floor", "sqlite-1p", "pg-1p", "pg-2p", "burst-sqlite", "burst-pg")

WRK_LUA = r"""
-- Each wrk thread takes every n-th line of TOKENS_FILE ("<agentId>\t<token>") and sends each
-- once, as StreamSpace's agent does; counts the answers by status.
local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  local n = tonumber(os.getenv("WRK_THREADS"))
  requests = {}
  local i = 0
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    if i % n == tid then
      local agent, token = line:match("([^\t]+)\t([^\t]+)")
      local body = '{"agentId":"' .. agent .. '","platform":"kubernetes","region":"default",'
        .. '"capacity":{"maxCpu":100,"maxMemory":128,"maxSessions":100},'
        .. '"metadata":{"namespace":"streamspace","kubernetes":true}}'
      table.insert(requests, wrk.format("POST", "/api/v1/agents/register",
        {["Content-Type"] = "application/json", ["X-Agent-API-Key"] = token}, body))
    end
    i = i + 1
  end
  next_request = 0
  ok = 0
  other = 0
end
function request()
  next_request = next_request + 1
  if next_request > #requests then
    -- out of fresh tokens: a health check keeps the connection busy without registering twice
    return wrk.format("GET", "/healthz")
  end
  return requests[next_request]
end
function response(status, headers, body)
  if body:find("approvalStatus", 1, true) then
    if status == 200 then ok = ok + 1 else other = other + 1 end
  else
    health = (health or 0) + 1
  end
end
function done(summary, latency, requests)
  local total_ok, total_other, total_health = 0, 0, 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_other = total_other + t:get("other")
    total_health = total_health + (t:get("health") or 0)
  end
  io.write(string.format("STATUS ok=%d other=%d exhausted=%d\n", total_ok, total_other,
    total_health))
end
"""

BURST_LUA = r"""
-- HPA burst: every connection registers one agent ("<agentId>\t<token>" lines of
-- TOKENS_FILE). As soon as every agent's registration was answered, a BURST line goes to stderr
-- (unbuffered): the bench takes the time then. A registration still unanswered 3 s after it was
-- sent (its connection broke) is sent again (an idempotent retry, as StreamSpace's agent
-- retries); connections with nothing left to send wait (wrk's delay()) and then ask /healthz,
-- so idle connections do not load the server while the others register.
function init(args)
  requests, agents, answered, sent_at = {}, {}, {}, {}
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    local agent, token = line:match("([^\t]+)\t([^\t]+)")
    local body = '{"agentId":"' .. agent .. '","platform":"kubernetes","region":"default",'
      .. '"capacity":{"maxCpu":100,"maxMemory":128,"maxSessions":100},'
      .. '"metadata":{"namespace":"streamspace","kubernetes":true}}'
    table.insert(agents, agent)
    table.insert(requests, wrk.format("POST", "/api/v1/agents/register",
      {["Content-Type"] = "application/json", ["X-Agent-API-Key"] = token}, body))
  end
  next_request, retry_cursor, ok, other, done_count = 0, 0, 0, 0, 0
end
function request()
  if not primed then
    -- wrk builds one request per thread that it never sends on a dynamic script: let it be
    -- a health check rather than an agent that would then wait for the resend
    primed = true
    return wrk.format("GET", "/healthz")
  end
  next_request = next_request + 1
  if next_request <= #requests then
    sent_at[next_request] = os.time()
    return requests[next_request]
  end
  local now = os.time()
  for _ = 1, #requests do
    retry_cursor = retry_cursor % #requests + 1
    if not answered[agents[retry_cursor]] and now - sent_at[retry_cursor] >= 3 then
      sent_at[retry_cursor] = now
      return requests[retry_cursor]
    end
  end
  return wrk.format("GET", "/healthz")
end
function delay()
  if next_request <= #requests then return 0 end  -- request() ran first: a registration goes now
  return 1000
end
function response(status, headers, body)
  local agent = body:match('"agentId":"([^"]+)"')
  if agent == nil and body:find("approvalStatus", 1, true) then agent = "?" end
  if agent ~= nil and not answered[agent] then
    answered[agent] = true
    done_count = done_count + 1
    if status == 200 then ok = ok + 1 else other = other + 1 end
    if done_count == #requests then
      io.stderr:write(string.format("BURST ok=%d other=%d\n", ok, other))
      io.stderr:flush()
    end
  end
end
"""

FLOOR_LUA = r"""
wrk.method = "POST"
wrk.path = "/api/v1/agents/register"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"agentId":"k8s-bench-floor","platform":"kubernetes","region":"default",'
  .. '"capacity":{"maxCpu":100,"maxMemory":128,"maxSessions":100},'
  .. '"metadata":{"namespace":"streamspace","kubernetes":true}}'
function response(status, headers, body) end
function done(summary, latency, requests)
  io.write(string.format("STATUS ok=%d other=%d\n", summary.requests, 0))
end
"""

FLOOR_SERVER = r"""
import ssl, sys
from aiohttp import web
async def handle(request):
    await request.read()
    return web.json_response({"approvalStatus": "approved"})
app = web.Application()
app.router.add_post("/api/v1/agents/register", handle)
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(sys.argv[2], sys.argv[3])
try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), ssl_context=context,
            access_log=None, print=None)
"""


@dataclass
class Step:
    """One step's figures (NaN where a figure does not apply)."""

    step: str
    processes: int
    registrations: int
    throughput_rps: float
    cpu_us_per_registration: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    burst_all_active_s: float = float("nan")
    non_200: int = 0
    checks: list[str] = field(default_factory=list)


def _descendants(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                pids.extend(_descendants(int(child)))
    return pids


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants, in seconds (proc(5), fields 14 and 15)."""
    total = 0
    for p in _descendants(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


class Workspace:
    """PKI, signing key, token files and configs in one temporary folder."""

    def __init__(self, root: Path) -> None:
        from bootstrap_token import SigningKey
        from certs_tooling.cli import main as certs_main

        self.root = root
        self.pki = root / "pki"
        if certs_main(["init", "--out", str(self.pki), "--local", "--force"]) != 0:
            raise SystemExit("certs-tooling init failed")
        self.signing_key = SigningKey.from_file(self.pki / "signing.key")
        self.ca = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        self.wrk_lua = root / "register.lua"
        self.wrk_lua.write_text(WRK_LUA)
        self.floor_lua = root / "floor.lua"
        self.floor_lua.write_text(FLOOR_LUA)
        self.floor_py = root / "floor.py"
        self.floor_py.write_text(FLOOR_SERVER)
        self._batch = 0

    def tokens(self, count: int) -> list[tuple[str, str]]:
        """``count`` fresh (agent id, token) pairs: StreamSpace ReplicaSet pods."""
        import uuid

        from bootstrap_token import BootstrapClaims, mint, new_jti

        self._batch += 1
        now = int(time.time())
        replicaset = f"streamspace-k8s-agent-{self._batch:04d}{secrets.token_hex(3)}"
        owner = {"kind": "ReplicaSet", "name": replicaset, "uid": str(uuid.uuid4())}
        pairs = []
        for _ in range(count):
            pod = f"{replicaset}-{secrets.token_hex(6)}"
            claims = BootstrapClaims.model_validate(
                {
                    "iss": "agent-bootstrap-webhook",
                    "aud": "agent-approver",
                    "iat": now,
                    "nbf": now,
                    "exp": now + 3600,
                    "jti": new_jti(),
                    "cluster": CLUSTER,
                    "namespace": NAMESPACE,
                    "serviceAccount": "streamspace-agent",
                    "pod": {"generateName": replicaset + "-"},
                    "owner": owner,
                    "admissionUid": str(uuid.uuid4()),
                }
            )
            pairs.append((f"{PREFIX}-{pod}", mint(claims, self.signing_key, now=now)))
        return pairs

    def tokens_file(self, pairs: list[tuple[str, str]], name: str) -> Path:
        path = self.root / name
        path.write_text("".join(f"{a}\t{t}\n" for a, t in pairs))
        return path

    def config(self, port: int, database_url: str) -> Path:
        import yaml

        document = {
            "autoApprove": {"enabled": True},
            "trust": {"namespaces": [NAMESPACE]},
            "token": {"jwksFile": str(self.pki / "jwks.json"), "clusters": [CLUSTER]},
            "agentIdPrefix": PREFIX,
            "databaseUrl": database_url,
            "tlsCertFile": str(self.pki / "approver-tls.crt"),
            "tlsKeyFile": str(self.pki / "approver-tls.key"),
            "host": "127.0.0.1",
            "port": port,
        }
        path = self.root / f"approver-{port}.yaml"
        path.write_text(yaml.safe_dump(document))
        return path


def start_approver(
    ws: Workspace, database_url: str, *, cpu: int | None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    config = ws.config(port, database_url)
    log = (ws.root / f"approver-{port}.log").open("wb")
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    proc = subprocess.Popen(
        [*pin, sys.executable, "-m", "approver", "--config", str(config)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    wait_healthy(ws, port, proc)
    return proc, port, config


def wait_healthy(ws: Workspace, port: int, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            url = f"https://localhost:{port}/healthz"
            with urllib.request.urlopen(url, context=ws.ca, timeout=5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not answer within 60 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_wrk(
    ws: Workspace,
    port: int,
    tokens: Path | None,
    *,
    seconds: float,
    connections: int,
    cpu: int | None,
) -> subprocess.Popen[str]:
    threads = 1
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    script = ws.wrk_lua if tokens is not None else ws.floor_lua
    return subprocess.Popen(
        [
            *pin,
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            f"https://127.0.0.1:{port}/api/v1/agents/register",
        ],
        env={**os.environ, "TOKENS_FILE": str(tokens or ""), "WRK_THREADS": str(threads)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def parse_wrk(text: str) -> tuple[float, int, int, int]:
    """(requests/s, requests, 200 answers, other answers) from wrk's summary and our script."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    status = re.search(r"STATUS ok=(\d+) other=(\d+)", text)
    ok, other = (int(status.group(1)), int(status.group(2))) if status else (total, 0)
    return rps, total, ok, other


def wrk_registrations(
    ws: Workspace, ports: list[int], pids: list[int], args: argparse.Namespace, *, cpu: int | None
) -> tuple[float, int, int, float]:
    """Run one wrk per port at once; returns (registrations/s, 200s, others, CPU s)."""
    count = int(args.expected_rps * args.duration * 1.5 / len(ports)) + 1000
    files = [ws.tokens_file(ws.tokens(count), f"tokens-{p}.tsv") for p in ports]
    before = sum(cpu_seconds(pid) for pid in pids)
    procs = [
        run_wrk(ws, port, f, seconds=args.duration, connections=args.connections, cpu=cpu)
        for port, f in zip(ports, files, strict=True)
    ]
    outputs = [p.communicate(timeout=args.duration + 60)[0] for p in procs]
    cpu_used = sum(cpu_seconds(pid) for pid in pids) - before
    ok = other = 0
    for text in outputs:
        if args.verbose:
            print(text)
        _, _, o, x = parse_wrk(text)
        ok += o
        other += x
    if other or not ok:
        # every registration carries a fresh valid token: anything but 200 is a broken setup
        # (or a regression), never a figure to print
        raise RuntimeError(f"wrk: {ok} registrations answered 200, {other} answered otherwise")
    return ok / args.duration, ok, other, cpu_used


async def fixed_rate(
    ws: Workspace, port: int, pairs: list[tuple[str, str]], *, rate: float
) -> list[float]:
    """Send ``pairs`` at ``rate``/s over keep-alive connections; latencies in ms."""
    import aiohttp

    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=64, ssl=ws.ca)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(agent: str, token: str) -> None:
            body = _body(agent)
            started = time.perf_counter()
            async with session.post(
                f"https://localhost:{port}/api/v1/agents/register",
                data=body,
                headers={"Content-Type": "application/json", "X-Agent-API-Key": token},
            ) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"fixed-rate registration answered {response.status}")
            latencies.append((time.perf_counter() - started) * 1000)

        tasks = []
        start = time.perf_counter()
        for i, (agent, token) in enumerate(pairs):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(agent, token)))
        await asyncio.gather(*tasks)
    return latencies


def _body(agent: str) -> bytes:
    return json.dumps(
        {
            "agentId": agent,
            "platform": "kubernetes",
            "region": "default",
            "capacity": {"maxCpu": 100, "maxMemory": 128, "maxSessions": 100},
            "metadata": {"namespace": NAMESPACE, "kubernetes": True},
        }
    ).encode()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def db_checks(
    config: Path, database_url: str, expected_active: int, *, in_flight: int = 0
) -> list[str]:
    """The database agrees with the answers: every 200 is an active agent (plus at most
    ``in_flight`` registrations that were committed after wrk stopped counting), and the
    audit chain verifies."""
    checks = []
    active = asyncio.run(_count_active(database_url))
    checks.append(
        f"active agents {active} (200 answers {expected_active}, in flight at stop <= {in_flight})"
    )
    if not expected_active <= active <= expected_active + in_flight:
        raise RuntimeError(checks[-1])
    done = subprocess.run(
        [sys.executable, "-m", "approver", "--config", str(config), "audit", "verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    checks.append(done.stdout.strip())
    if done.returncode != 0:
        raise RuntimeError(f"audit verify failed: {done.stdout} {done.stderr}")
    return checks


async def _count_active(database_url: str) -> int:
    from approver.domain.records import AgentStatus
    from approver.store import Store

    store = Store.open(database_url)
    try:
        count = 0
        after = None
        while True:
            page = await store.list_agents(status=AgentStatus.ACTIVE, after=after, limit=1000)
            count += len(page)
            if len(page) < 1000:
                return count
            after = (page[-1].created_at, page[-1].id)
    finally:
        await store.close()


@contextlib.contextmanager
def database(kind: str, ws: Workspace, pg_dsn: str | None, name: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{ws.root / (name + '.db')}"
        return
    if not pg_dsn:
        raise SystemExit("PostgreSQL steps need --pg-dsn or AGENT_BOOTSTRAP_TEST_PG_DSN")
    import sqlalchemy as sa

    server = sa.make_url(pg_dsn).set(drivername="postgresql")
    db = f"approver_bench_{name}_{secrets.token_hex(4)}"
    admin = server.render_as_string(hide_password=False)
    subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{db}"'], check=True)
    try:
        yield (
            sa.make_url(pg_dsn)
            .set(drivername="postgresql+asyncpg", database=db)
            .render_as_string(hide_password=False)
        )
    finally:
        subprocess.run(
            ["psql", admin, "-qc", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'], check=False
        )


def step_throughput(
    name: str, kind: str, ws: Workspace, args: argparse.Namespace, cpus: list[int]
) -> Step:
    server_cpu, load_cpu = (
        (cpus[0], cpus[1]) if len(cpus) >= 2 and kind == "sqlite" else (None, None)
    )
    with database(kind, ws, args.pg_dsn, name) as url:
        proc, port, config = start_approver(ws, url, cpu=server_cpu)
        try:
            # warm-up: a short run, its agents stay (they count in the check below)
            warm = ws.tokens_file(
                ws.tokens(int(args.expected_rps * args.warmup * 1.5)), f"warm-{port}.tsv"
            )
            w = run_wrk(
                ws, port, warm, seconds=args.warmup, connections=args.connections, cpu=load_cpu
            )
            _, _, warm_ok, _ = parse_wrk(w.communicate(timeout=args.warmup + 60)[0])
            rps, ok, other, cpu = wrk_registrations(ws, [port], [proc.pid], args, cpu=load_cpu)
            pairs = ws.tokens(int(args.rate * args.latency_seconds))
            latencies = asyncio.run(fixed_rate(ws, port, pairs, rate=args.rate))
        finally:
            stop(proc)
        checks = db_checks(config, url, warm_ok + ok + len(pairs), in_flight=8 * args.connections)
    return Step(
        step=name,
        processes=1,
        registrations=ok,
        throughput_rps=rps,
        cpu_us_per_registration=cpu / ok * 1e6 if ok else float("nan"),
        p50_ms=statistics.median(latencies),
        p99_ms=percentile(latencies, 99),
        non_200=other,
        checks=checks,
    )


def step_two_processes(ws: Workspace, args: argparse.Namespace) -> Step:
    with database("pg", ws, args.pg_dsn, "pg2p") as url:
        first, port_a, config = start_approver(ws, url, cpu=None)
        second, port_b, _ = start_approver(ws, url, cpu=None)
        try:
            warm = [
                ws.tokens_file(ws.tokens(int(args.expected_rps * args.warmup)), f"warm-{p}.tsv")
                for p in (port_a, port_b)
            ]
            ws_ = [
                run_wrk(ws, p, f, seconds=args.warmup, connections=args.connections, cpu=None)
                for p, f in zip((port_a, port_b), warm, strict=True)
            ]
            warm_ok = sum(parse_wrk(w.communicate(timeout=args.warmup + 60)[0])[2] for w in ws_)
            rps, ok, other, cpu = wrk_registrations(
                ws, [port_a, port_b], [first.pid, second.pid], args, cpu=None
            )
        finally:
            stop(first)
            stop(second)
        checks = db_checks(config, url, warm_ok + ok, in_flight=16 * args.connections)
    return Step(
        step="pg-2p",
        processes=2,
        registrations=ok,
        throughput_rps=rps,
        cpu_us_per_registration=cpu / ok * 1e6 if ok else float("nan"),
        non_200=other,
        checks=checks,
    )


def wrk_burst(ws: Workspace, port: int, tokens: Path, count: int) -> tuple[float, int, int]:
    """``count`` agents on ``count`` connections at once (wrk, :data:`BURST_LUA`): seconds from
    starting wrk until every one was answered, 200 answers, other answers."""
    lua = ws.root / "burst.lua"
    lua.write_text(BURST_LUA)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            "wrk",
            "-t1",
            f"-c{count}",
            "-d60s",
            "--timeout",
            "30s",
            "-s",
            str(lua),
            f"https://127.0.0.1:{port}/api/v1/agents/register",
        ],
        env={**os.environ, "TOKENS_FILE": str(tokens)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            found = re.search(r"BURST ok=(\d+) other=(\d+)", line)
            if found:
                return time.perf_counter() - started, int(found.group(1)), int(found.group(2))
        raise RuntimeError("the burst did not finish within 60 s")
    finally:
        proc.kill()
        proc.wait()


def step_burst(name: str, kind: str, ws: Workspace, args: argparse.Namespace) -> Step:
    """HPA burst: wrk opens one TLS connection per agent at once; each registers once."""
    with database(kind, ws, args.pg_dsn, name) as url:
        proc, port, config = start_approver(ws, url, cpu=None)
        try:
            tokens = ws.tokens_file(ws.tokens(args.burst), f"burst-{port}.tsv")
            elapsed, ok, bad = wrk_burst(ws, port, tokens, args.burst)
        finally:
            stop(proc)
        checks = db_checks(config, url, ok)
    return Step(
        step=name,
        processes=1,
        registrations=ok,
        throughput_rps=ok / elapsed,
        burst_all_active_s=elapsed,
        non_200=bad,
        checks=checks,
    )


def step_floor(ws: Workspace, args: argparse.Namespace, cpus: list[int]) -> Step:
    server_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    port = free_port()
    pin = (
        ["taskset", "-c", str(server_cpu)]
        if server_cpu is not None and shutil.which("taskset")
        else []
    )
    proc = subprocess.Popen(
        [
            *pin,
            sys.executable,
            str(ws.floor_py),
            str(port),
            str(ws.pki / "approver-tls.crt"),
            str(ws.pki / "approver-tls.key"),
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("floor server did not start")
            time.sleep(0.1)
        before = cpu_seconds(proc.pid)
        w = run_wrk(
            ws, port, None, seconds=args.duration, connections=args.connections, cpu=load_cpu
        )
        text = w.communicate(timeout=args.duration + 60)[0]
        cpu = cpu_seconds(proc.pid) - before
        rps, total, _, _ = parse_wrk(text)
    finally:
        stop(proc)
    return Step(
        step="floor",
        processes=1,
        registrations=total,
        throughput_rps=rps,
        cpu_us_per_registration=cpu / total * 1e6 if total else float("nan"),
    )


def ed25519_verification_us(rounds: int = 5, count: int = 2000) -> tuple[float, float]:
    """CPU µs of one Ed25519 verification of a token-sized message, medians of ``rounds``:
    (with ``cryptography``, as issue 15's yardstick; with libsodium, as the approver does)."""
    import nacl.signing
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    message = secrets.token_bytes(600)
    signature = private.sign(message)
    sodium = nacl.signing.VerifyKey(public.public_bytes(Encoding.Raw, PublicFormat.Raw))
    openssl_us, sodium_us = [], []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            public.verify(signature, message)
        openssl_us.append((time.process_time() - started) / count * 1e6)
        started = time.process_time()
        for _ in range(count):
            sodium.verify(message, signature)
        sodium_us.append((time.process_time() - started) / count * 1e6)
    return statistics.median(openssl_us), statistics.median(sodium_us)


def table(steps: list[Step], verification: tuple[float, float] | None = None) -> str:
    lines = [
        "| step | processes | registrations | reg/s | CPU µs/reg | p50 ms | p99 ms | "
        "burst: all active (s) | non-200 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(value: float, fmt: str) -> str:
        return "-" if value != value else format(value, fmt)

    for s in steps:
        lines.append(
            f"| {s.step} | {s.processes} | {s.registrations:,} | {s.throughput_rps:,.0f} | "
            f"{f(s.cpu_us_per_registration, '.0f')} | {f(s.p50_ms, '.2f')} | "
            f"{f(s.p99_ms, '.2f')} | {f(s.burst_all_active_s, '.2f')} | {s.non_200} |"
        )
    by = {s.step: s for s in steps}
    if "floor" in by and "sqlite-1p" in by and by["floor"].throughput_rps:
        floor, sqlite = by["floor"], by["sqlite-1p"]
        lines += [
            "",
            f"- sqlite-1p / floor: {sqlite.throughput_rps / floor.throughput_rps:.2f}x throughput, "
            f"{sqlite.cpu_us_per_registration / floor.cpu_us_per_registration:.2f}x CPU "
            "per request",
        ]
    if verification is not None:
        openssl_us, sodium_us = verification
        lines.append(
            f"- one Ed25519 verification: {openssl_us:.0f} µs (cryptography), "
            f"{sodium_us:.0f} µs (libsodium)"
        )
        for s in steps:
            if s.step != "floor" and s.cpu_us_per_registration == s.cpu_us_per_registration:
                lines.append(
                    f"- {s.step}: CPU per registration = "
                    f"{s.cpu_us_per_registration / openssl_us:.1f}x one Ed25519 verification "
                    "(cryptography; issue 15's target: at most 4x)"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.approver_bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk load")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up")
    parser.add_argument("--connections", type=int, default=16, help="wrk keep-alive connections")
    parser.add_argument("--rate", type=float, default=200.0, help="fixed-rate registrations/s")
    parser.add_argument("--latency-seconds", type=float, default=5.0, help="fixed-rate seconds")
    parser.add_argument("--burst", type=int, default=1000, help="agents in the HPA burst")
    parser.add_argument(
        "--expected-rps", type=float, default=2500.0, help="tokens to mint per second of load"
    )
    parser.add_argument("--steps", default=",".join(ALL_STEPS), help=", ".join(ALL_STEPS))
    parser.add_argument("--pg-dsn", default=os.environ.get("AGENT_BOOTSTRAP_TEST_PG_DSN"))
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="print wrk output")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("approver_bench: wrk not found (`apt-get install -y wrk`)", file=sys.stderr)
        return 2
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = set(steps) - set(ALL_STEPS)
    if unknown:
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    if not args.pg_dsn:
        skipped = [s for s in steps if "pg" in s]
        if skipped:
            print(f"approver_bench: no --pg-dsn; skipping {', '.join(skipped)}", file=sys.stderr)
        steps = [s for s in steps if "pg" not in s]
    cpus = sorted(os.sched_getaffinity(0))
    results: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="approver-bench-") as tmp:
        ws = Workspace(Path(tmp))
        for name in steps:
            print(f"-- {name}", file=sys.stderr, flush=True)
            if name == "floor":
                result = step_floor(ws, args, cpus)
            elif name == "sqlite-1p":
                result = step_throughput(name, "sqlite", ws, args, cpus)
            elif name == "pg-1p":
                result = step_throughput(name, "pg", ws, args, cpus)
            elif name == "pg-2p":
                result = step_two_processes(ws, args)
            else:
                result = step_burst(name, "sqlite" if name.endswith("sqlite") else "pg", ws, args)
            print(f"   {asdict(result)}", file=sys.stderr, flush=True)
            results.append(result)
    print(
        f"\napprover bench: {os.cpu_count()} CPUs, {args.duration:g}s of wrk with "
        f"{args.connections} connections, fixed rate {args.rate:g}/s, burst {args.burst}\n"
    )
    print(table(results, ed25519_verification_us()))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
