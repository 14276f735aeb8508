"""An agent that registers exactly as StreamSpace's k8s-agent does.

StreamSpace's k8s-agent (``agents/k8s-agent/main.go``, ``registerAgent``) sends
``POST <control plane>/api/v1/agents/register`` with ``Content-Type: application/json`` and the
body ``{"agentId", "platform", "region", "capacity": {"maxSessions", "cpu", "memory"},
"metadata": {"kubernetes": true, "namespace"}}`` (``tests/fixtures/streamspace/
registration-request.json``); its API key comes from ``AGENT_API_KEY`` and
travels in ``X-Agent-API-Key``. It treats 200 and 201 as registered; while pending it retries
every 30 s. Here the retry interval is a parameter so the demo and the tests can shorten it.

The environment is built the way the pod spec builds it: ``AGENT_ID`` is
``$(AGENT_ID_PREFIX)-$(POD_NAME)`` and, with env injection, ``AGENT_API_KEY`` is the bootstrap-token
annotation read through the downward API.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any

import aiohttp

STREAMSPACE_RETRY_SECONDS = 30.0


@dataclass
class RegistrationResult:
    """The last answer the agent got, and how many attempts it took."""

    status: int
    body: dict[str, Any]
    attempts: int


@dataclass
class StreamSpaceAgent:
    """The registration half of StreamSpace's k8s-agent, configured from its environment."""

    env: dict[str, str]
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def agent_id(self) -> str:
        return self.env["AGENT_ID"]

    def request_body(self) -> dict[str, Any]:
        """The JSON body k8s-agent marshals (omitempty fields included when set)."""
        body: dict[str, Any] = {
            "agentId": self.env["AGENT_ID"],
            "platform": self.env.get("PLATFORM") or "kubernetes",
            "capacity": {
                "maxSessions": int(self.env.get("MAX_SESSIONS") or 100),
                "cpu": self.env.get("MAX_CPU") or "64 cores",
                "memory": self.env.get("MAX_MEMORY") or "256Gi",
            },
            "metadata": {
                "namespace": self.env.get("NAMESPACE") or "streamspace",
                "kubernetes": True,
            },
        }
        if self.env.get("REGION"):
            body["region"] = self.env["REGION"]
        return body

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.extra_headers}
        if self.env.get("AGENT_API_KEY"):
            headers["X-Agent-API-Key"] = self.env["AGENT_API_KEY"]
        return headers

    async def register_once(
        self, session: aiohttp.ClientSession, base_url: str, *, ssl_context: ssl.SSLContext
    ) -> tuple[int, dict[str, Any]]:
        async with session.post(
            f"{base_url}/api/v1/agents/register",
            json=self.request_body(),
            headers=self.headers(),
            ssl=ssl_context,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as resp:
            return resp.status, await resp.json()

    async def register(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext,
        retry_seconds: float = STREAMSPACE_RETRY_SECONDS,
        max_attempts: int = 1,
    ) -> RegistrationResult:
        """Register, retrying while the answer is 202 pending, at most ``max_attempts`` times."""
        attempts = 0
        while True:
            attempts += 1
            status, body = await self.register_once(session, base_url, ssl_context=ssl_context)
            if status != 202 or attempts >= max_attempts:
                return RegistrationResult(status, body, attempts)
            await asyncio.sleep(retry_seconds)


def pod_env(
    deployment: dict[str, Any], *, pod_name: str, annotations: dict[str, str] | None
) -> dict[str, str]:
    """The k8s-agent container's environment as the kubelet would resolve it.

    ``value`` entries with ``$(VAR)`` references are expanded from earlier variables;
    ``fieldRef`` ``metadata.name`` gives the pod name and ``metadata.annotations['k']`` the
    annotation (downward API); ``secretKeyRef`` entries resolve to nothing (no Secret here).
    """
    container = next(
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "k8s-agent"
    )
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            value = str(var["value"])
            for name, resolved in env.items():
                value = value.replace(f"$({name})", resolved)
            env[var["name"]] = value
            continue
        field_ref = var.get("valueFrom", {}).get("fieldRef")
        if field_ref is None:
            continue
        path = field_ref["fieldPath"]
        if path == "metadata.name":
            env[var["name"]] = pod_name
        elif path.startswith("metadata.annotations['") and annotations is not None:
            key = path[len("metadata.annotations['") : -2]
            if key in annotations:
                env[var["name"]] = annotations[key]
    return env


def agent_for(pod: dict[str, Any]) -> StreamSpaceAgent:
    """StreamSpace's k8s-agent in ``pod`` (the chart's Deployment with ``AGENT_API_KEY`` read
    from the token annotation): its env resolved as the kubelet would."""
    from demo.apiserver import load_deployment

    env = pod_env(
        load_deployment(),
        pod_name=pod["metadata"]["name"],
        annotations=pod["metadata"].get("annotations"),
    )
    return StreamSpaceAgent(env=env)
