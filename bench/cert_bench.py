"""Agent-certificate issuance (issue 16): raw ``cryptography`` signing rates, then the approver's
``POST /api/v1/agents/{agentId}/certificate`` over HTTPS, in one run.

``python -m bench.cert_bench [--duration S] [--warmup S] [--connections N]
[--database sqlite|postgresql] [--agents N] [--max-live N] [--crypto-seconds S] [--pg-dsn URL]
[--json PATH]``

1. **Raw signing**, in this process, one thread, CPU time (``time.process_time``), median of 5
   rounds: (a) an ECDSA P-256 signature of 32 bytes with SHA-256 (the agent CA's key type:
   ``certs-tooling agent-ca init`` makes P-256 CAs); (b)
   :func:`approver.domain.agent_certificates.build_certificate`, i.e. ``cryptography``'s
   ``CertificateBuilder(...).sign(ca_key, SHA256())`` of a leaf with the approver's profile;
   (c) :func:`~approver.domain.agent_certificates.check_csr` of an Ed25519 CSR (parse + signature
   check + the profile's rules). Each as ops/s and µs/op.
2. **Issuance over HTTPS**: a real ``agent-bootstrap-approver`` process (``python -m approver``,
   TLS from ``certs-tooling init --local``, the agent CA from ``certs-tooling agent-ca init``,
   ``agentCertificates.enabled``), on a fresh SQLite or PostgreSQL database into which ``--agents``
   active agents are seeded, each with its own per-agent key. An aiohttp client keeps
   ``--connections`` keep-alive connections busy; every POST carries a fresh CSR of a fresh
   Ed25519 key, all generated *before* the timed window, and the agents are taken round-robin.
   Figures: certificates issued per second (wall), the approver's CPU per issuance (utime+stime
   of the process from ``/proc``, :func:`bench.approver_bench.cpu_seconds`), issued per second
   per core (``1e6 / CPU µs per issuance``), and that CPU as a multiple of (b).
3. **Checks**: every answer is 200; a sample of the certificates (at least 10) verifies against
   the agent CA (``verify_directly_issued_by``), names its agent and carries its CSR's key; the
   database holds one ``agent_certificates`` row per 200 answer; the audit chain verifies
   (``agent-bootstrap-approver audit verify``). Any failure: exit status 1.

An agent holds at most ``maxLivePerAgent`` (``--max-live``, default 2) live certificates: with
``--agents`` agents round-robin, every issuance after the first ``agents * max-live`` supersedes
the agent's oldest one (one more UPDATE in its transaction). The output says how many did;
with ``--agents`` times ``--max-live`` above the number of issuances (e.g. ``--agents 4000``
for about 3,000) none does: issuance without supersession.

With SQLite on a host of 2 CPUs or more, the approver is pinned to the first CPU and the client
to the second (as ``approver_bench`` does); PostgreSQL runs unpinned (its server needs a CPU too).
The PostgreSQL DSN is ``--pg-dsn`` (default ``$AGENT_BOOTSTRAP_TEST_PG_DSN``); a database of its
own is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import secrets
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from approver.domain.agent_certificates import (
    AgentIdentity,
    build_certificate,
    check_csr,
    identity_of,
    lifetime,
)
from bench.approver_bench import (
    CLUSTER,
    NAMESPACE,
    PREFIX,
    ROOT,
    Workspace,
    cpu_seconds,
    database,
    start_approver,
    stop,
)

#: Rounds of each raw-signing figure (the median is printed).
ROUNDS = 5
#: Certificates checked in full after the run (a uniform sample of the 200 answers).
SAMPLE = 32
#: The approver's issuance path (``approver.http.certificates.CERTIFICATE_PATH``).
CERTIFICATE_PATH = "/api/v1/agents/{agent_id}/certificate"


@dataclass
class RawRate:
    """One raw-signing figure: ``ops_per_s`` and ``us_per_op`` are CPU-time rates of one thread
    (median of :data:`ROUNDS` rounds)."""

    step: str
    label: str
    ops_per_s: float
    us_per_op: float


@dataclass
class Issuance:
    """The HTTPS issuance figures of one run.

    Attributes:
        issued: 200 answers in the timed window.
        non_200: other answers (and failed requests) in the timed window.
        window_s: wall seconds of the timed window (until the last answer of it).
        issued_per_s: ``issued / window_s``.
        cpu_us_per_issuance: the approver's CPU (utime+stime) in the window / ``issued``, µs.
        issued_per_s_per_core: ``1e6 / cpu_us_per_issuance``.
        server_cores_busy: approver CPU seconds / ``window_s``.
        client_cpu_us_per_request: this process's CPU in the window / requests, µs.
        superseded: issuances (warm-up included) that superseded an older certificate.
        total_issued: 200 answers, warm-up included.
    """

    step: str
    issued: int
    non_200: int
    window_s: float
    issued_per_s: float
    cpu_us_per_issuance: float
    issued_per_s_per_core: float
    server_cores_busy: float
    client_cpu_us_per_request: float
    superseded: int = 0
    total_issued: int = 0
    ran_out_of_csrs: bool = False
    checks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class CertWorkspace(Workspace):
    """:class:`bench.approver_bench.Workspace` plus an agent CA (``agent-ca.*`` in the PKI
    folder) and an approver config with ``agentCertificates`` on."""

    def __init__(self, root: Path, *, max_live: int) -> None:
        from certs_tooling.cli import main as certs_main

        said = io.StringIO()  # certs-tooling's "next steps": shown only when it fails
        try:
            with contextlib.redirect_stdout(said):
                super().__init__(root)
                if certs_main(["agent-ca", "init", "--out", str(self.pki)]) != 0:
                    raise SystemExit("certs-tooling agent-ca init failed")
        except BaseException:
            sys.stderr.write(said.getvalue())
            raise
        self.max_live = max_live
        self.agent_ca_cert = self.pki / "agent-ca.crt"
        self.agent_ca_key = self.pki / "agent-ca.key"

    def config(self, port: int, database_url: str) -> Path:
        """The approver's YAML config for ``port`` and ``database_url`` (agent certificates on,
        metrics listener off)."""
        import yaml

        path = super().config(port, database_url)
        document = yaml.safe_load(path.read_text())
        document["metricsPort"] = 0
        document["agentCertificates"] = {
            "enabled": True,
            "caCertFile": str(self.agent_ca_cert),
            "caKeyFile": str(self.agent_ca_key),
            "trustBundleFile": str(self.pki / "agent-ca-bundle.crt"),
            "maxLivePerAgent": self.max_live,
            # The bench reissues to each agent every second or so, to measure issuance: the
            # reissue limit (60 s while a live certificate is held) would answer 429.
            "minReissueSeconds": 0,
        }
        path.write_text(yaml.safe_dump(document))
        return path


# -- raw cryptography -------------------------------------------------------------------------


def cpu_rate(operation: Callable[[], object], *, seconds: float) -> tuple[float, float]:
    """(ops/s, µs/op) of ``operation`` in this thread's process CPU time: :data:`ROUNDS` rounds
    of about ``seconds / ROUNDS`` CPU seconds each, the median round."""
    per_round = seconds / ROUNDS
    operation()  # first call outside the rounds (imports, lazy initialisation)
    rates = []
    for _ in range(ROUNDS):
        count = 0
        started = time.process_time()
        while True:
            for _ in range(20):
                operation()
            count += 20
            elapsed = time.process_time() - started
            if elapsed >= per_round:
                break
        rates.append(count / elapsed)
    rate = statistics.median(rates)
    return rate, 1e6 / rate


def _agent_id(index: int) -> str:
    return f"{PREFIX}-cert-{index:05d}"


def _pod(index: int) -> str:
    return f"cert-{index:05d}"


def agent_identity(index: int) -> AgentIdentity:
    """What the certificate of seeded agent number ``index`` names (its URI SAN)."""
    return AgentIdentity(
        cluster=CLUSTER, namespace=NAMESPACE, pod=_pod(index), agent_id=_agent_id(index)
    )


def new_csr(agent_id: str) -> tuple[str, bytes]:
    """A CSR (PEM) for ``agent_id`` with a fresh Ed25519 key and subject ``CN=<agent id>``, and
    the key's raw public bytes."""
    key = ed25519.Ed25519PrivateKey.generate()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent_id)]))
        .sign(key, None)
    )
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii"), raw


def raw_rates(ca_cert: Path, ca_key: Path, *, seconds: float) -> list[RawRate]:
    """The raw-signing figures (a), (b), (c) of the module docstring, with the agent CA at
    ``ca_cert``/``ca_key``; ``seconds`` of CPU time per figure."""
    certificate = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SystemExit(f"{ca_key}: the agent CA's key is not ECDSA P-256")
    message = secrets.token_bytes(32)
    identity = agent_identity(0)
    csr_pem, _ = new_csr(identity.agent_id)
    public_key = check_csr(csr_pem, identity)
    now = datetime.now(UTC)
    validity = lifetime(now=now, seconds=86400, ca_not_after=now + timedelta(days=365))

    def sign() -> object:
        return key.sign(message, ec.ECDSA(hashes.SHA256()))

    def build() -> object:
        return build_certificate(
            identity=identity,
            public_key=public_key,
            ca_certificate=certificate,
            ca_key=key,
            serial=secrets.randbits(159) | 1,
            validity=validity,
        )

    def check() -> object:
        return check_csr(csr_pem, identity)

    figures = [
        ("raw-ecdsa-p256-sign", "(a) ECDSA P-256 sign of 32 bytes, SHA-256", sign),
        ("raw-build-certificate", "(b) leaf certificate: build_certificate (sign P-256)", build),
        ("raw-check-csr", "(c) CSR parse + signature check: check_csr (Ed25519)", check),
    ]
    out = []
    for step, label, operation in figures:
        rate, us = cpu_rate(operation, seconds=seconds)
        out.append(RawRate(step, label, rate, us))
    return out


# -- the approver ---------------------------------------------------------------------------


async def seed_agents(database_url: str, count: int) -> list[str]:
    """Migrate the database and insert ``count`` active agents (ids ``k8s-bench-cert-NNNNN``,
    bound to cluster/namespace/pod); returns their per-agent keys, by index."""
    from approver.domain.agent_keys import key_digest, new_agent_key
    from approver.domain.records import AgentRecord, AgentStatus, ApprovalMethod
    from approver.store import Store

    now = datetime.now(UTC)
    keys = [new_agent_key() for _ in range(count)]
    store = Store.open(database_url)
    try:
        await store.migrate()
        async with store.transaction() as tx:
            for index, key in enumerate(keys):
                await tx.insert_agent(
                    AgentRecord(
                        id=uuid.uuid4(),
                        agent_id=_agent_id(index),
                        platform="kubernetes",
                        region=None,
                        capacity=None,
                        metadata={},
                        status=AgentStatus.ACTIVE,
                        approval_method=ApprovalMethod.MANUAL,
                        approved_by="cert-bench",
                        approved_at=now,
                        reason="approved_by_admin",
                        jti=None,
                        kid=None,
                        cluster=CLUSTER,
                        namespace=NAMESPACE,
                        pod_name=_pod(index),
                        pod_uid=None,
                        credential_hash=None,
                        created_at=now,
                        updated_at=now,
                        api_key_hash=key_digest(key),
                        api_key_issued_at=now,
                    )
                )
    finally:
        await store.close()
    return keys


@dataclass
class Request:
    """One prepared POST: the agent (index), its key, the JSON body, the CSR key's raw bytes."""

    agent: int
    api_key: str
    body: bytes
    public_key: bytes


def prepare(keys: list[str], count: int, start: int) -> list[Request]:
    """``count`` requests with fresh CSRs, agents round-robin from request number ``start``."""
    out = []
    for n in range(start, start + count):
        agent = n % len(keys)
        pem, raw = new_csr(_agent_id(agent))
        out.append(Request(agent, keys[agent], json.dumps({"csr": pem}).encode(), raw))
    return out


@dataclass
class Load:
    """What one load phase saw: answers by kind; the window's wall seconds, this process's
    CPU seconds and the server's (when a ``server_pid`` was given); a sample of the 200 answers
    ``(request, body)``; whether the prepared requests ran out."""

    ok: int = 0
    other: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = float("nan")
    sample: list[tuple[Request, bytes]] = field(default_factory=list)
    ran_out: bool = False


async def drive(
    port: int,
    context: ssl.SSLContext,
    requests: list[Request],
    *,
    seconds: float,
    connections: int,
    server_pid: int | None = None,
) -> Load:
    """POST ``requests`` in order over ``connections`` keep-alive connections until ``seconds``
    have passed (no new request after that; those in flight are waited for) or they run out.
    The connections are opened (TLS handshake, ``GET /healthz``) before the window starts; the
    CPU seconds of ``server_pid`` are read at its start and end."""
    import aiohttp

    load = Load()
    seen = 0
    cursor = 0
    url = f"https://localhost:{port}"
    connector = aiohttp.TCPConnector(limit=connections, ssl=context)
    async with aiohttp.ClientSession(connector=connector) as session:
        # one request first on every connection: handshakes happen outside the window
        async def open_one() -> None:
            async with session.get(url + "/healthz") as answer:
                await answer.read()

        await asyncio.gather(*(open_one() for _ in range(connections)))

        async def worker(deadline: float) -> None:
            nonlocal cursor, seen
            while time.perf_counter() < deadline:
                if cursor >= len(requests):
                    load.ran_out = True
                    return
                request = requests[cursor]
                cursor += 1
                path = CERTIFICATE_PATH.format(agent_id=_agent_id(request.agent))
                try:
                    async with session.post(
                        url + path,
                        data=request.body,
                        headers={
                            "Content-Type": "application/json",
                            "X-Agent-API-Key": request.api_key,
                        },
                    ) as answer:
                        body = await answer.read()
                        status = str(answer.status)
                except (aiohttp.ClientError, OSError) as exc:
                    status, body = type(exc).__name__, b""
                load.statuses[status] = load.statuses.get(status, 0) + 1
                if status != "200":
                    load.other += 1
                    continue
                load.ok += 1
                seen += 1
                if len(load.sample) < SAMPLE:
                    load.sample.append((request, body))
                else:  # reservoir sampling: a uniform sample over the whole window
                    slot = random.randrange(seen)
                    if slot < SAMPLE:
                        load.sample[slot] = (request, body)

        server_before = cpu_seconds(server_pid) if server_pid is not None else 0.0
        cpu_before = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds) for _ in range(connections)))
        load.wall_s = time.perf_counter() - started
        load.client_cpu_s = time.process_time() - cpu_before
        if server_pid is not None:
            load.server_cpu_s = cpu_seconds(server_pid) - server_before
    return load


def run_async(coroutine: Any) -> Any:
    """Run ``coroutine`` on a fresh event loop (uvloop when installed, as the approver does)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[None]:
    """This process on CPU ``cpu`` only (None: unchanged) for the block."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def check_sample(sample: list[tuple[Request, bytes]], ca_cert: Path) -> tuple[str, list[str]]:
    """Check the sampled answers: certificate verifies against the agent CA
    (``verify_directly_issued_by``), ``caCertificate`` is that CA, the serial matches, the URI
    SAN names the agent, the key is the CSR's. Returns (a summary, failures)."""
    ca_pem = ca_cert.read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    failures = []
    for request, body in sample:
        agent_id = _agent_id(request.agent)
        try:
            answer = json.loads(body)
            certificate = x509.load_pem_x509_certificate(answer["certificate"].encode())
            certificate.verify_directly_issued_by(ca)
            if answer["caCertificate"].encode().strip() != ca_pem.strip():
                raise ValueError("caCertificate is not the agent CA")
            if answer["serial"] != format(certificate.serial_number, "x"):
                raise ValueError("serial does not match the certificate")
            identity = identity_of(certificate)
            if identity is None or identity != agent_identity(request.agent):
                raise ValueError(f"the URI SAN names {identity}")
            raw = certificate.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            if raw != request.public_key:
                raise ValueError("the certificate's key is not the CSR's")
        except Exception as exc:  # every failure is reported
            failures.append(f"{agent_id}: {type(exc).__name__}: {exc}")
    summary = (
        f"{len(sample)} sampled certificates verify against the agent CA "
        "(verify_directly_issued_by), name their agent and carry their CSR's key"
        if not failures
        else f"{len(failures)} of {len(sample)} sampled certificates failed"
    )
    return summary, failures


async def count_rows(database_url: str) -> tuple[int, int]:
    """(rows of ``agent_certificates``, rows revoked as ``superseded``)."""
    import sqlalchemy as sa

    from approver.agent_certs.tables import agent_certificates as t
    from approver.store import Store

    store = Store.open(database_url)
    try:
        async with store.reading() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.c.revoked_reason, sa.func.count()).group_by(t.c.revoked_reason)
                )
            ).all()
    finally:
        await store.close()
    counts = {reason: int(n) for reason, n in rows}
    return sum(counts.values()), counts.get("superseded", 0)


def audit_verify(config: Path) -> tuple[bool, str]:
    """``agent-bootstrap-approver audit verify`` on ``config``'s database: (ok, its output)."""
    done = subprocess.run(
        [sys.executable, "-m", "approver", "--config", str(config), "audit", "verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return done.returncode == 0, (done.stdout.strip() or done.stderr.strip())


def issuance(ws: CertWorkspace, args: argparse.Namespace, cpus: list[int]) -> Issuance:
    """Seed, start the approver, warm up, measure, check (module docstring, steps 2 and 3)."""
    kind = "sqlite" if args.database == "sqlite" else "pg"
    server_cpu, client_cpu = (
        (cpus[0], cpus[1]) if len(cpus) >= 2 and kind == "sqlite" else (None, None)
    )
    step = f"issue-{args.database}"
    with database(kind, ws, args.pg_dsn, "cert") as url:
        keys = run_async(seed_agents(url, args.agents))
        proc, port, config = start_approver(ws, url, cpu=server_cpu)
        try:
            made = 0
            warm_requests = prepare(
                keys, max(args.connections, int(args.expected_rate * args.warmup)), made
            )
            made += len(warm_requests)
            with pinned(client_cpu):
                warm = run_async(
                    drive(
                        port,
                        ws.ca,
                        warm_requests,
                        seconds=args.warmup,
                        connections=args.connections,
                    )
                )
            rate = warm.ok / warm.wall_s if warm.wall_s > 0 else args.expected_rate
            count = int(max(rate, 50.0) * args.duration * 2) + 4 * args.connections
            print(
                f"   warm-up: {warm.ok} issued at {rate:,.0f}/s; preparing {count} CSRs",
                file=sys.stderr,
                flush=True,
            )
            requests = prepare(keys, count, made)
            with pinned(client_cpu):
                load = run_async(
                    drive(
                        port,
                        ws.ca,
                        requests,
                        seconds=args.duration,
                        connections=args.connections,
                        server_pid=proc.pid,
                    )
                )
        finally:
            stop(proc)
        total_rows, superseded = run_async(count_rows(url))
        audit_ok, audit_text = audit_verify(config)
    failures = []
    checks = []
    total_ok = warm.ok + load.ok
    non_200 = warm.other + load.other
    statuses = dict(warm.statuses)
    for status, n in load.statuses.items():
        statuses[status] = statuses.get(status, 0) + n
    answers = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
    if non_200 or not load.ok:
        failures.append(f"answers (warm-up and window) by status: {answers}")
    else:
        checks.append(
            f"all {total_ok:,} answers were 200 (warm-up {warm.ok:,}, window {load.ok:,})"
        )
    sample = warm.sample[: SAMPLE // 4] + load.sample
    summary, bad = check_sample(sample, ws.agent_ca_cert)
    if bad:
        failures.extend(bad)
    elif len(sample) < 10:
        failures.append(f"only {len(sample)} certificates to check (at least 10 are needed)")
    else:
        checks.append(summary)
    if total_rows != total_ok:
        failures.append(f"agent_certificates holds {total_rows} rows for {total_ok} 200 answers")
    else:
        checks.append(f"agent_certificates holds one row per 200 answer ({total_rows:,})")
    if audit_ok:
        checks.append(f"audit verify: {audit_text}")
    else:
        failures.append(f"audit verify failed: {audit_text}")
    server_cpu_s = load.server_cpu_s
    cpu_us = server_cpu_s / load.ok * 1e6 if load.ok else float("nan")
    requests_sent = load.ok + load.other
    return Issuance(
        step=step,
        issued=load.ok,
        non_200=load.other,
        window_s=load.wall_s,
        issued_per_s=load.ok / load.wall_s if load.wall_s else float("nan"),
        cpu_us_per_issuance=cpu_us,
        issued_per_s_per_core=1e6 / cpu_us if cpu_us > 0 else float("nan"),
        server_cores_busy=server_cpu_s / load.wall_s if load.wall_s else float("nan"),
        client_cpu_us_per_request=(
            load.client_cpu_s / requests_sent * 1e6 if requests_sent else float("nan")
        ),
        superseded=superseded,
        total_issued=total_ok,
        ran_out_of_csrs=load.ran_out,
        checks=checks,
        failures=failures,
    )


# -- output ---------------------------------------------------------------------------------


def report(
    raw: list[RawRate], result: Issuance, args: argparse.Namespace, pins: tuple[int, int] | None
) -> str:
    """The printed figures (Markdown tables and notes)."""
    pin = (
        f"approver pinned to CPU {pins[0]}, client to CPU {pins[1]}"
        if pins
        else "approver and client unpinned"
    )
    lines = [
        f"cert bench: {os.cpu_count()} CPUs, database {args.database}, {args.duration:g}s "
        f"(+{args.warmup:g}s warm-up) with {args.connections} keep-alive connections, "
        f"{args.agents} agents round-robin, maxLivePerAgent {args.max_live}; {pin}",
        "",
        f"raw cryptography (this process, one thread, CPU time, median of {ROUNDS} rounds):",
        "",
        "| operation | ops/s | µs/op |",
        "|---|---:|---:|",
    ]
    for r in raw:
        lines.append(f"| {r.label} | {r.ops_per_s:,.0f} | {r.us_per_op:.1f} |")
    built = next(r for r in raw if r.step == "raw-build-certificate")
    s = result
    lines += [
        "",
        "approver issuance over HTTPS (POST /api/v1/agents/{agentId}/certificate, aiohttp "
        "keep-alive, a fresh Ed25519 CSR per request, prepared before the window):",
        "",
        "| database | issued | window s | issued/s (wall) | approver CPU µs/issuance | "
        "issued/s per core | approver cores busy | client CPU µs/request | non-200 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {args.database} | {s.issued:,} | {s.window_s:.2f} | {s.issued_per_s:,.0f} | "
        f"{s.cpu_us_per_issuance:,.0f} | {s.issued_per_s_per_core:,.0f} | "
        f"{s.server_cores_busy:.2f} | {s.client_cpu_us_per_request:,.0f} | {s.non_200} |",
        "",
        f"- one issuance costs {s.cpu_us_per_issuance / built.us_per_op:.1f}x the CPU of one raw "
        f"certificate signing (b) ({s.cpu_us_per_issuance:,.0f} µs / {built.us_per_op:.1f} µs)",
        f"- supersession: {s.superseded:,} of {s.total_issued:,} issuances (warm-up included) "
        f"superseded an older certificate ({args.agents} agents x maxLivePerAgent "
        f"{args.max_live}: every issuance after the first {args.agents * args.max_live:,} "
        "revokes the agent's oldest live one, one UPDATE in the same transaction)",
    ]
    if s.ran_out_of_csrs:
        lines.append(
            f"- the prepared CSRs ran out after {s.window_s:.2f}s: the window is that long"
        )
    lines += [f"- check: {c}" for c in s.checks]
    lines += [f"- FAILED: {f}" for f in s.failures]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (module docstring) and print its figures. Exit 0, or 1 when a check
    fails (a non-200 answer, a certificate that does not verify, a database or audit mismatch)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.cert_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of timed load (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up load (2)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (16)")
    parser.add_argument(
        "--database", choices=("sqlite", "postgresql"), default="sqlite", help="default sqlite"
    )
    parser.add_argument("--agents", type=int, default=200, help="seeded agents, round-robin (200)")
    parser.add_argument(
        "--max-live", type=int, default=2, help="agentCertificates.maxLivePerAgent, 1..16 (2)"
    )
    parser.add_argument(
        "--crypto-seconds",
        type=float,
        default=1.5,
        help="CPU seconds per raw-signing figure, split into 5 rounds (1.5)",
    )
    parser.add_argument(
        "--expected-rate",
        type=float,
        default=1000.0,
        help="issuances/s to prepare CSRs for in the warm-up (1000); the window's are sized "
        "from the warm-up's rate",
    )
    parser.add_argument("--pg-dsn", default=os.environ.get("AGENT_BOOTSTRAP_TEST_PG_DSN"))
    parser.add_argument("--json", type=Path, help="write the figures here as JSON rows")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.agents < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--connections and --agents must be >= 1, --duration > 0, --warmup >= 0")
    if not 1 <= args.max_live <= 16:
        parser.error("--max-live must be 1..16 (agentCertificates.maxLivePerAgent)")
    if args.database == "postgresql" and not args.pg_dsn:
        print(
            "cert_bench: --database postgresql needs --pg-dsn or AGENT_BOOTSTRAP_TEST_PG_DSN",
            file=sys.stderr,
        )
        return 2
    cpus = sorted(os.sched_getaffinity(0))
    pins = (cpus[0], cpus[1]) if len(cpus) >= 2 and args.database == "sqlite" else None
    with tempfile.TemporaryDirectory(prefix="cert-bench-") as tmp:
        ws = CertWorkspace(Path(tmp), max_live=args.max_live)
        print("-- raw cryptography", file=sys.stderr, flush=True)
        raw = raw_rates(ws.agent_ca_cert, ws.agent_ca_key, seconds=args.crypto_seconds)
        print(f"-- issue-{args.database}", file=sys.stderr, flush=True)
        result = issuance(ws, args, cpus)
    print()
    print(report(raw, result, args, pins))
    if args.json:
        rows: list[dict[str, Any]] = [asdict(r) for r in raw]
        rows.append(asdict(result))
        args.json.write_text(json.dumps(rows, indent=2))
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
