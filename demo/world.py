"""The whole path on loopback: StreamSpace's stand-in, the Kubernetes API stand-in, the webhook and
the approver (real processes, real TLS), and the cluster's part played in code.

:class:`World` is what ``make demo``, the integration tests and the benchmark run against:

* StreamSpace's API stand-in (``tests/streamspace``; HTTPS with the demo CA), with a shared
  ``AGENT_BOOTSTRAP_KEY``, a dedicated admin account for the approver and a human administrator;
* the Kubernetes API stand-in (``tests/kube_api.py``) holding the agent pods, read and watched by
  the approver through a kubeconfig;
* the webhook (``injectEnv`` on) and the approver (``controlPlane.type: streamspace``, Kubernetes
  access on) as processes (:class:`demo.stack.Stack`);
* :class:`demo.cluster.Cluster`: pods of StreamSpace's Deployment, rendered with the guide's
  values (``CONTROL_PLANE_URL`` at the approver, ``AGENT_API_KEY`` from the pod's UID), admitted
  through the webhook and stored;
* :meth:`World.agent`: StreamSpace's k8s-agent stand-in for one pod, with the environment the
  kubelet gives it;
* with ``agent_certificates``: an agent CA (``certs-tooling agent-ca init``), the approver issuing
  agent certificates and checking them at its gate, the webhook injecting the agent proxy into
  pods that opt in, and :meth:`World.start_proxy` running a pod's injected sidecar (in this
  process, from the sidecar's own environment; on loopback each pod's proxy gets a port of its
  own, standing in for the pod's own network namespace, and leaves from the pod's address).
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from agent_proxy.__main__ import run as run_proxy
from agent_proxy.config import ProxySettings
from demo.cluster import Cluster, Pod, container_env, guide_values_env, streamspace_deployment
from demo.stack import AGENT_ID_PREFIX, ANNOTATION, Stack, bin_path, free_port
from tests.kube_api import KubeApi, write_kubeconfig
from tests.streamspace.agent import K8sAgentStandIn
from tests.streamspace.control_plane import ControlPlaneConfig, StreamSpaceControlPlane, User

#: The approver's dedicated StreamSpace account, and a human administrator of StreamSpace.
APPROVER_USER = User("agent-bootstrap", "Approver-Passw0rd-" + secrets.token_hex(4), role="admin")
HUMAN_ADMIN = User("alice", "Alice-Passw0rd-" + secrets.token_hex(4), role="admin")
SHARED_SECRET = "streamspace-secrets"  # noqa: S105 - the Secret's name in StreamSpace's chart
SHARED_SECRET_KEY = "agent-bootstrap-key"  # noqa: S105 - a key name
#: The proxy sidecar's name and the annotation that asks for it (webhook.sidecar).
PROXY_CONTAINER = "agent-bootstrap-proxy"
PROXY_OPT_IN = {"agent-bootstrap.io/agent-proxy": "true"}


@dataclass
class RunningProxy:
    """One pod's agent proxy: where the agent finds it, and how to stop it."""

    url: str
    settings: ProxySettings
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


@dataclass
class World:
    """The loopback world (module docstring).

    Attributes:
        work: folder for PKI, configs, logs, secrets and the SQLite database.
        database_url: the approver's store (default: SQLite in ``work``).
        sync_seconds: the approver's ``controlPlane.syncIntervalSeconds`` and
            ``gateRecheckSeconds`` (short on loopback).
        bcrypt_cost: the stand-in's bcrypt cost (StreamSpace's is 12, about 250 ms a hash).
        trusted: trusted namespaces.
        quiet: no progress lines.
        approver_extra: more approver config keys.
        rate_limit_rpm: the stand-in's ``RATE_LIMIT_REQUESTS_PER_MINUTE`` (per client IP).
        approvers: approver processes (:class:`demo.stack.Stack`).
        streamspace_tls: serve StreamSpace's stand-in over HTTPS (its chart serves plain HTTP
            inside the cluster; the tests use HTTPS, the benchmark either).
        agent_certificates: agent client certificates and the agent proxy (module docstring).
        require_certificates: the gate's ``agentCertificates.requireAtGate``.
    """

    work: Path
    database_url: str | None = None
    sync_seconds: float = 0.2
    bcrypt_cost: int = 4
    trusted: list[str] = field(default_factory=lambda: ["streamspace"])
    quiet: bool = False
    approver_extra: dict[str, Any] = field(default_factory=dict)
    rate_limit_rpm: int = 60
    approvers: int = 1
    streamspace_tls: bool = True
    agent_certificates: bool = False
    require_certificates: bool = False

    def __post_init__(self) -> None:
        self.shared_key = secrets.token_hex(32)
        self.stack = Stack(
            self.work,
            trusted=self.trusted,
            database_url=self.database_url,
            quiet=self.quiet,
            webhook_extra={"injectEnv": {"enabled": True}},
            approvers=self.approvers,
        )
        self.kube = KubeApi()
        self.streamspace = StreamSpaceControlPlane(
            ControlPlaneConfig(
                bootstrap_key=self.shared_key,
                users=(APPROVER_USER, HUMAN_ADMIN),
                bcrypt_cost=self.bcrypt_cost,
                rate_limit_rpm=self.rate_limit_rpm,
            ),
            ssl_context=self._server_ssl() if self.streamspace_tls else None,
        )
        self.cluster = Cluster(
            kube=self.kube, webhook_url=self.stack.webhook_url, client_ssl=self.stack.client_ssl
        )
        self.proxies: list[RunningProxy] = []
        if self.agent_certificates:
            self._init_agent_ca()
            self.stack.webhook_extra["agentProxy"] = {
                "enabled": True,
                "image": "agent-bootstrap:demo",
                "upstreamUrl": self.stack.approver_url,
            }

    def _init_agent_ca(self) -> None:
        """``certs-tooling agent-ca init`` into the demo's PKI folder."""
        done = subprocess.run(
            [bin_path("certs-tooling"), "agent-ca", "init", "--out", str(self.stack.pki)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"certs-tooling agent-ca init failed: {done.stderr.strip()}")

    def _server_ssl(self) -> ssl.SSLContext:
        """StreamSpace's stand-in serves HTTPS with a certificate of the demo CA (localhost)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        pki = self.stack.pki
        context.load_cert_chain(pki / "approver-tls.crt", pki / "approver-tls.key")
        return context

    @property
    def client_ssl(self) -> ssl.SSLContext:
        """Trust for every TLS server of the world (one demo CA)."""
        return self.stack.client_ssl

    @property
    def gate_url(self) -> str:
        """The approver as the agents' ``CONTROL_PLANE_URL``."""
        return self.stack.approver_url.replace("https://", "wss://")

    def _secret(self, name: str, value: str) -> Path:
        path = self.work / "secrets" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(value + "\n")
        path.chmod(0o600)
        return path

    async def start(self) -> None:
        """Start the stand-ins, then the webhook and the approver."""
        await self.kube.start()
        await self.streamspace.start(host="localhost")
        kubeconfig = write_kubeconfig(self.kube, self.work / "kubeconfig")
        self.stack.approver_extra = {
            "kubernetes": {
                "enabled": True,
                "kubeconfig": str(kubeconfig),
                "tokenAnnotation": ANNOTATION,
            },
            "controlPlane": {
                "type": "streamspace",
                "syncIntervalSeconds": self.sync_seconds,
                "gateRecheckSeconds": self.sync_seconds,
                "streamspace": {
                    "url": self.streamspace.url,
                    **({"caFile": str(self.stack.pki / "ca.crt")} if self.streamspace_tls else {}),
                    "bootstrapKeyFile": str(self._secret("bootstrap-key", self.shared_key)),
                    "adminUsernameFile": str(self._secret("username", APPROVER_USER.username)),
                    "adminPasswordFile": str(self._secret("password", APPROVER_USER.password)),
                },
            },
            **self.approver_extra,
        }
        if self.agent_certificates:
            pki = self.stack.pki
            self.stack.approver_extra["agentCertificates"] = {
                "enabled": True,
                "caCertFile": str(pki / "agent-ca.crt"),
                "caKeyFile": str(pki / "agent-ca.key"),
                "trustBundleFile": str(pki / "agent-ca-bundle.crt"),
                "requireAtGate": self.require_certificates,
            }
        try:
            await self.stack.start()
        except BaseException:
            await self._close_stand_ins()
            raise

    async def _close_stand_ins(self) -> None:
        await self.streamspace.close()
        await self.kube.close()

    async def stop(self) -> dict[str, int]:
        """Stop the proxies, the services (exit codes), then the stand-ins."""
        for proxy in self.proxies:
            await proxy.close()
        # Off the event loop: the stand-ins on this loop must keep answering while the services
        # close their connections to them.
        codes = await asyncio.to_thread(self.stack.stop)
        await self._close_stand_ins()
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
        await self.stop()

    # --- the cluster -------------------------------------------------------------------------

    def deployment(self) -> dict[str, Any]:
        """StreamSpace's agent Deployment rendered with the guide's values."""
        return self.deployment_for(self.gate_url)

    def deployment_for(self, control_plane_url: str) -> dict[str, Any]:
        """The same, with agents pointed at ``control_plane_url`` (one approver of several)."""
        return streamspace_deployment(
            control_plane_url=control_plane_url, extra_env=guide_values_env()
        )

    async def create_pod(
        self,
        session: aiohttp.ClientSession,
        *,
        namespace: str = "streamspace",
        annotations: dict[str, str] | None = None,
        deployment: dict[str, Any] | None = None,
    ) -> Pod:
        """One agent pod, admitted through the webhook and stored."""
        _, pod = await self.cluster.create_pod(
            session, deployment or self.deployment(), namespace=namespace, annotations=annotations
        )
        return pod

    def env(self, pod: Pod) -> dict[str, str]:
        """The agent container's environment, as the kubelet resolves it."""
        return container_env(
            pod, secret_values={(SHARED_SECRET, SHARED_SECRET_KEY): self.shared_key}
        )

    def agent(
        self, pod: Pod, *, proxy: RunningProxy | None = None, **options: Any
    ) -> K8sAgentStandIn:
        """StreamSpace's k8s-agent running in ``pod``: connecting from the pod's address, with
        short intervals unless given; through ``proxy`` (its sidecar) when given, which the
        webhook pointed ``CONTROL_PLANE_URL`` at (the proxy's own port here)."""
        options.setdefault("local_addr", pod.address)
        options.setdefault("pending_retry_seconds", 0.3)
        options.setdefault("reconnect_backoff", (0.2, 0.4, 0.8))
        options.setdefault("request_timeout", 10.0)
        env = self.env(pod)
        if proxy is not None:
            assert env["CONTROL_PLANE_URL"].startswith("ws://127.0.0.1:"), env["CONTROL_PLANE_URL"]
            env["CONTROL_PLANE_URL"] = proxy.url
            options["local_addr"] = None  # to the pod's own loopback
        return K8sAgentStandIn(env, ssl_context=self.client_ssl, **options)

    async def start_proxy(self, pod: Pod) -> RunningProxy:
        """Run ``pod``'s injected proxy sidecar (module docstring), from its environment."""
        sidecar = next(
            c
            for c in pod.manifest["spec"].get("initContainers", [])
            if c["name"] == PROXY_CONTAINER
        )
        env = {e["name"]: e["value"] for e in sidecar["env"]}
        settings = ProxySettings(
            upstream_url=env["AGENT_BOOTSTRAP_PROXY_UPSTREAM_URL"],
            ca_file=self.stack.pki / "ca.crt",  # the ConfigMap agent-bootstrap-ca's ca.crt
            listen_host="127.0.0.1",
            listen_port=free_port(),
            state_dir=self.work / "proxies" / pod.name,  # its emptyDir
            retry_seconds=0.2,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(run_proxy(settings, stop=stop, local_address=pod.address))
        for _ in range(200):
            if task.done():
                task.result()
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", settings.listen_port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        running = RunningProxy(f"ws://127.0.0.1:{settings.listen_port}", settings, stop, task)
        self.proxies.append(running)
        return running

    @staticmethod
    def agent_id(pod: Pod) -> str:
        return f"{AGENT_ID_PREFIX}-{pod.name}"

    # --- one request, as an agent or an attacker would send it --------------------------------

    async def register_once(
        self, env: Mapping[str, str], *, key: str | None = None, source: str | None = None
    ) -> tuple[int, dict[str, Any], Mapping[str, str]]:
        """One registration at the approver with StreamSpace's agent's exact body for ``env``,
        ``X-Agent-API-Key`` ``key`` (default: the env's ``AGENT_API_KEY``), from the address
        ``source`` (default: 127.0.0.1). Returns the status, the JSON body and the headers."""
        connector = aiohttp.TCPConnector(local_addr=(source, 0) if source else None)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                f"{self.stack.approver_url}/api/v1/agents/register",
                data=K8sAgentStandIn.request_body(env),
                headers={
                    "Content-Type": "application/json",
                    "X-Agent-API-Key": key if key is not None else env["AGENT_API_KEY"],
                },
                ssl=self.client_ssl,
                timeout=aiohttp.ClientTimeout(total=10),
            ) as answer,
        ):
            return answer.status, await answer.json(), answer.headers

    async def gate_connect(
        self, agent_id: str, key: str, *, certificate_of: RunningProxy | None = None
    ) -> int:
        """A WebSocket dial at the approver's gate as ``agent_id`` with ``key`` (and the client
        certificate ``certificate_of``'s proxy holds, as anyone holding its files would): 101,
        or the status of the refusal."""
        context = self.client_ssl
        if certificate_of is not None:
            context = ssl.create_default_context(cafile=str(self.stack.pki / "ca.crt"))
            state = certificate_of.settings.state_dir
            context.load_cert_chain(state / "tls.crt", state / "tls.key")
        url = f"{self.stack.approver_url}/api/v1/agents/connect?agent_id={agent_id}"
        async with aiohttp.ClientSession() as session:
            try:
                ws = await session.ws_connect(url, headers={"X-Agent-API-Key": key}, ssl=context)
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
            await ws.close()
            return 101

    # --- StreamSpace's administrator ---------------------------------------------------------

    async def streamspace_admin(
        self, method: str, path: str, *, user: User = HUMAN_ADMIN
    ) -> tuple[int, Any]:
        """A call of StreamSpace's administrator on its admin API (login, then the call)."""
        base = self.streamspace.url
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{base}/api/v1/auth/login",
                json={"username": user.username, "password": user.password},
                ssl=self.client_ssl,
            ) as login:
                token = (await login.json())["token"]
            async with session.request(
                method,
                f"{base}/api/v1/admin{path}",
                headers={"Authorization": f"Bearer {token}"},
                ssl=self.client_ssl,
            ) as answer:
                return answer.status, await answer.json()

    async def streamspace_agents(self) -> dict[str, dict[str, Any]]:
        """StreamSpace's own list (``GET /api/v1/admin/agents``), by agent id."""
        status, body = await self.streamspace_admin("GET", "/agents")
        if status != 200:
            raise RuntimeError(f"StreamSpace's admin list answered {status}")
        return {str(a["agentId"]): a for a in body["agents"]}

    async def approver_admin(self, method: str, path: str) -> tuple[int, Any]:
        """A call on the approver's admin API."""
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                f"{self.stack.approver_url}/api/v1/admin{path}",
                headers={"Authorization": f"Bearer {self.stack.admin_token}"},
                ssl=self.client_ssl,
            ) as answer,
        ):
            return answer.status, await answer.json()
