"""Start the real services (their console scripts) on loopback over TLS, for the demo and the
end-to-end tests: ``certs-tooling init --local``, config files, processes, health waits, stop."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import yaml

ANNOTATION = "agents.streamspace.io/bootstrap-token"
AGENT_ID_PREFIX = "k8s-prod-cluster"
ADMIN_NAME = "demo-admin"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, below the kernel's ephemeral range.

    A port is chosen before the server that listens on it starts; in between, every outgoing
    connection of the machine (a service's connections to PostgreSQL, say) takes a local port
    from the ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``), so a port picked
    there can be taken before the server binds it ("address already in use", seen in CI). Ports
    below that range are never handed out that way. Falls back to a kernel-chosen port when
    none of 200 random tries below the range is free.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = secrets.randbelow(low - _FIRST_PORT) + _FIRST_PORT
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Lowest port :func:`free_port` picks (above the registered well-known services' crowd).
_FIRST_PORT = 20000


@functools.cache
def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux; 32768 where it cannot be read)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
    return low if low > _FIRST_PORT + 1000 else 32768


def bin_path(name: str) -> str:
    """The console script ``name`` of this interpreter's environment (else from PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


class StackError(RuntimeError):
    """A service did not start; the message carries its log."""


@dataclass
class Stack:
    """Webhook + approver as real processes, configured from ``certs-tooling`` output in ``work``.

    Attributes:
        work: folder for PKI, configs, logs and the SQLite database.
        trusted: trusted namespaces (both services read the same trust policy).
        auto_approve: the approver's ``autoApprove.enabled``.
        database_url: approver store; default SQLite in ``work``.
        webhook_extra / approver_extra: more config keys, merged over the defaults.
        quiet: no progress lines.
        approvers: approver processes (more than one needs a PostgreSQL ``database_url``);
            they listen on ``approver_ports``, named ``approver``, ``approver-2``, ...
    """

    work: Path
    trusted: list[str] = field(default_factory=lambda: ["streamspace"])
    auto_approve: bool = True
    database_url: str | None = None
    webhook_extra: dict[str, Any] = field(default_factory=dict)
    approver_extra: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False
    approvers: int = 1

    def __post_init__(self) -> None:
        self.pki = self.work / "pki"
        self.webhook_port = free_port()
        self.approver_ports = [free_port() for _ in range(self.approvers)]
        self.approver_port = self.approver_ports[0]
        self.admin_token = secrets.token_urlsafe(32)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.client_ssl = self._init_pki()

    @property
    def webhook_url(self) -> str:
        return f"https://localhost:{self.webhook_port}"

    @property
    def approver_url(self) -> str:
        return f"https://localhost:{self.approver_port}"

    @property
    def approver_urls(self) -> list[str]:
        """Every approver process's URL (one per ``approvers``)."""
        return [f"https://localhost:{port}" for port in self.approver_ports]

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text)

    def _init_pki(self) -> ssl.SSLContext:
        """Run ``certs-tooling init --local``; return a client context trusting only its CA."""
        run = subprocess.run(
            [bin_path("certs-tooling"), "init", "--out", str(self.pki), "--local"],
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            raise StackError(f"certs-tooling init failed: {run.stderr}")
        self._say(f"[pki]      {run.stdout.strip()}")
        return ssl.create_default_context(cafile=str(self.pki / "ca.crt"))

    def webhook_config(self) -> dict[str, Any]:
        return {
            "trust": {"namespaces": self.trusted},
            "annotationKey": ANNOTATION,
            "cluster": "demo",
            "signingKeyFile": str(self.pki / "signing.key"),
            "tlsCertFile": str(self.pki / "webhook-tls.crt"),
            "tlsKeyFile": str(self.pki / "webhook-tls.key"),
            "host": "127.0.0.1",
            "port": self.webhook_port,
            "metricsPort": 0,  # several stacks may run at once (tests); no fixed port
            "shutdownDelaySeconds": 0,  # no Service to drain from on loopback
            **self.webhook_extra,
        }

    def approver_config(self, port: int | None = None) -> dict[str, Any]:
        tokens = self.work / "admin-tokens"
        tokens.write_text(f"{ADMIN_NAME}:{self.admin_token}\n")
        tokens.chmod(0o600)
        return {
            "autoApprove": {"enabled": self.auto_approve},
            "trust": {"namespaces": self.trusted},
            "token": {"jwksFile": str(self.pki / "jwks.json"), "clusters": ["demo"]},
            "agentIdPrefix": AGENT_ID_PREFIX,
            "databaseUrl": self.database_url or f"sqlite+aiosqlite:///{self.work / 'agents.db'}",
            "adminTokensFile": str(tokens),
            "tlsCertFile": str(self.pki / "approver-tls.crt"),
            "tlsKeyFile": str(self.pki / "approver-tls.key"),
            "host": "127.0.0.1",
            "port": port or self.approver_port,
            "metricsPort": 0,  # as the webhook's: several stacks may run at once; no open port
            **self.approver_extra,
        }

    def _start(self, name: str, script: str, config: dict[str, Any]) -> None:
        path = self.work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        log = (self.work / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [bin_path(script), "--config", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def _approver_names(self) -> list[str]:
        return ["approver"] + [f"approver-{n}" for n in range(2, self.approvers + 1)]

    def log(self, name: str) -> str:
        """What service ``name`` (``webhook`` or ``approver``) printed so far."""
        return (self.work / f"{name}.log").read_text(errors="replace")

    async def _wait_healthy(self, session: aiohttp.ClientSession, name: str, url: str) -> None:
        for _ in range(150):
            try:
                async with session.get(f"{url}/healthz", ssl=self.client_ssl) as resp:
                    if resp.status == 200:
                        self._say(f"[{name:8}] up on {url} (TLS, CA-only trust)")
                        return
            except aiohttp.ClientConnectionError:
                pass
            if self.procs[name].poll() is not None:
                break
            await asyncio.sleep(0.1)
        raise StackError(f"{name} did not become healthy:\n{self.log(name)}")

    async def start(self) -> None:
        """Start both services and wait until each answers ``/healthz`` over TLS."""
        try:
            self._start("webhook", "agent-bootstrap-webhook", self.webhook_config())
            names = self._approver_names()
            for name, port in zip(names, self.approver_ports, strict=True):
                self._start(name, "agent-bootstrap-approver", self.approver_config(port))
            async with aiohttp.ClientSession() as session:
                await self._wait_healthy(session, "webhook", self.webhook_url)
                for name, url in zip(names, self.approver_urls, strict=True):
                    await self._wait_healthy(session, name, url)
        except BaseException:
            self.stop()  # never leave a started service behind
            raise

    def stop(self) -> dict[str, int]:
        """SIGTERM both services, wait (10 s, then kill); return their exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
