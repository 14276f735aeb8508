"""`make demo`: the user's story end to end on loopback, and a table of both sides.

The world (:class:`demo.world.World`): StreamSpace's API and StreamSpace's k8s-agent as
stand-ins that behave like StreamSpace's unmodified code (``tests/streamspace``, each behaviour
citing its Go file and function), a Kubernetes API stand-in holding the pods, and the webhook and
the approver as real processes over TLS (``certs-tooling init --local``; the approver on SQLite
with ``controlPlane.type: streamspace``). Pods come from StreamSpace's own agent Deployment,
rendered with the values of docs/streamspace.md, admitted through the webhook.

1. The HPA adds an agent pod in the trusted namespace ``streamspace``: stamped, its agent is
   approved **in StreamSpace's own list** and its WebSocket opens there.
2. The same token copied onto another agent registers nobody, nor does it from another address
   than its pod's; neither StreamSpace's shared key nor the token opens a WebSocket as the
   first agent.
3. An agent pod in the untrusted namespace ``team-sandbox`` (a planted token stripped by the
   webhook) waits **pending in StreamSpace's list** until StreamSpace's administrator approves it
   there; then it connects.
4. The first agent's container restarts: its pod's token again gets a new key (rotate-key in
   StreamSpace) and it reconnects, no administrator involved.
5. The HPA removes the first pod: its agent is **gone from StreamSpace's list**, its WebSocket
   closed.
6. A pod that opts in to the agent proxy (annotation ``agent-bootstrap.io/agent-proxy``): the
   webhook injects the sidecar, which obtains the agent's client certificate; the agent connects
   through it with the certificate. Another agent's certificate and a revoked one are refused at
   the gate, and the proxy enrolls again by itself.

Exit 0 only if every step ended as expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509

from demo.cluster import Pod
from demo.stack import ANNOTATION, StackError
from demo.world import HUMAN_ADMIN, PROXY_CONTAINER, PROXY_OPT_IN, RunningProxy, World
from tests.streamspace.agent import AgentExit, K8sAgentStandIn


async def until(check: Callable[[], Awaitable[bool] | bool], *, within: float = 10.0) -> bool:
    """Poll ``check`` until it is true (True) or ``within`` seconds pass (False)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if not isinstance(value, bool):
            value = await value
        if value:
            return True
        await asyncio.sleep(0.05)
    return False


class Demo:
    def __init__(self, world: World) -> None:
        self.world = world
        # The proxies run in this process (World.start_proxy): their warnings as demo lines.
        proxy_log = logging.getLogger("agent_proxy")
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("           [proxy] %(message)s"))
        proxy_log.addHandler(handler)
        proxy_log.setLevel(logging.WARNING)
        proxy_log.propagate = False
        self.failures: list[str] = []
        self.agents: dict[str, tuple[str, K8sAgentStandIn, asyncio.Task[None]]] = {}

    def expect(self, what: str, ok: bool) -> None:
        print(f"           {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures.append(what)

    def start_agent(
        self, pod: Pod, *, label: str | None = None, proxy: RunningProxy | None = None
    ) -> K8sAgentStandIn:
        agent = self.world.agent(pod, proxy=proxy, heartbeat_interval=1.0)
        task = asyncio.create_task(agent.run())
        self.agents[label or self.world.agent_id(pod)] = (pod.namespace, agent, task)
        return agent

    async def stop_agent(self, label: str) -> None:
        _, agent, task = self.agents[label]
        await agent.stop()
        with contextlib.suppress(AgentExit, asyncio.CancelledError):
            await task

    async def in_streamspace(self, agent_id: str) -> dict[str, Any] | None:
        return (await self.world.streamspace_agents()).get(agent_id)

    async def scenarios(self, session: aiohttp.ClientSession) -> None:
        world = self.world
        print("\n1. HPA scales StreamSpace's k8s-agent up in trusted namespace 'streamspace'")
        pod_a = await world.create_pod(session)
        a_id = world.agent_id(pod_a)
        self.expect(
            f"webhook stamped pod {pod_a.name}; AGENT_API_KEY points at the token",
            ANNOTATION in pod_a.annotations
            and world.env(pod_a)["AGENT_API_KEY"] == pod_a.annotations[ANNOTATION],
        )
        agent_a = self.start_agent(pod_a)
        connected = await until(lambda: a_id in world.streamspace.connected_agents())
        row = await self.in_streamspace(a_id)
        self.expect(
            f"agent -> {agent_a.registrations[0][0] if agent_a.registrations else '-'}; in "
            f"StreamSpace: approvalStatus={row and row['approvalStatus']}, WebSocket open",
            connected and row is not None and row["approvalStatus"] == "approved",
        )

        print("\n2. The same token copied onto a second agent, and StreamSpace's shared key")
        token = world.env(pod_a)["AGENT_API_KEY"]
        pod_b = await world.create_pod(session)
        status, body, _ = await world.register_once(
            world.env(pod_b), key=token, source=pod_b.address
        )
        self.expect(
            f"copied token on {world.agent_id(pod_b)} -> {status} ({body['reason']})",
            status == 403 and body["reason"] == "token_reused",
        )
        status, body, _ = await world.register_once(world.env(pod_a), source="127.0.200.1")
        self.expect(
            f"its token read from the annotation, for {a_id[-11:]} from another address "
            f"-> {status} ({body['reason']})",
            status == 403 and body["reason"] == "pod_address_mismatch",
        )
        for what, key in (("shared key", world.shared_key), ("bootstrap token", token)):
            status = await world.gate_connect(a_id, key)
            self.expect(f"WebSocket as {a_id[-11:]} with the {what} -> {status}", status == 403)
        self.expect(
            "no agent pod's environment holds the shared key",
            world.shared_key not in world.env(pod_a).values()
            and world.shared_key not in world.env(pod_b).values(),
        )
        world.cluster.delete_pod(pod_b)

        print("\n3. An agent pod in untrusted namespace 'team-sandbox' (came with a planted token)")
        pod_c = await world.create_pod(
            session, namespace="team-sandbox", annotations={ANNOTATION: "planted.token.value"}
        )
        c_id = world.agent_id(pod_c)
        self.expect(
            "webhook removed the planted annotation; AGENT_API_KEY is the pod's UID",
            ANNOTATION not in pod_c.annotations and world.env(pod_c)["AGENT_API_KEY"] == pod_c.uid,
        )
        agent_c = self.start_agent(pod_c)

        async def pending_there() -> bool:
            row = await self.in_streamspace(c_id)
            return row is not None and row["approvalStatus"] == "pending"

        self.expect(
            "agent -> 202 pending; in StreamSpace's list: pending, no WebSocket",
            await until(pending_there) and c_id not in world.streamspace.connected_agents(),
        )
        status, _ = await world.streamspace_admin("POST", f"/agents/{c_id}/approve")
        self.expect(f"StreamSpace's administrator approves it there -> {status}", status == 200)
        opened = await until(lambda: c_id in world.streamspace.connected_agents(), within=15)
        status = agent_c.registrations[-1][0] if agent_c.registrations else 0
        self.expect(
            f"its next retry -> {status} with StreamSpace's key for it; WebSocket open",
            opened and status == 200 and agent_c.api_key != pod_c.uid,
        )

        print("\n4. The first agent's container restarts (its key is lost with it)")
        old_key = agent_a.api_key
        await self.stop_agent(a_id)
        await until(lambda: a_id not in world.streamspace.connected_agents())
        restarted = self.start_agent(pod_a, label=a_id)
        self.expect(
            "it presents its pod's token again -> a new key (rotate-key), WebSocket open",
            await until(lambda: a_id in world.streamspace.connected_agents())
            and restarted.api_key != old_key,
        )
        status = await world.gate_connect(a_id, old_key)
        self.expect(f"the old key at the gate -> {status}", status == 403)

        print("\n5. HPA scales down: the first pod is deleted")
        world.cluster.delete_pod(pod_a)

        async def gone() -> bool:
            return await self.in_streamspace(a_id) is None

        self.expect(
            "its agent is gone from StreamSpace's list and its WebSocket closed",
            await until(gone)
            and await until(lambda: a_id not in world.streamspace.connected_agents()),
        )
        await self.certificates(session)

    async def certificates(self, session: aiohttp.ClientSession) -> None:
        world = self.world
        print("\n6. A pod that opts in to the agent proxy: client certificates")
        pod = await world.create_pod(session, annotations=PROXY_OPT_IN)
        agent_id = world.agent_id(pod)
        init = [c["name"] for c in pod.manifest["spec"].get("initContainers", [])]
        self.expect(
            f"webhook injected the {PROXY_CONTAINER} sidecar; CONTROL_PLANE_URL -> "
            f"{world.env(pod)['CONTROL_PLANE_URL']}",
            init == [PROXY_CONTAINER]
            and world.env(pod)["CONTROL_PLANE_URL"].startswith("ws://127.0.0.1:"),
        )
        proxy = await world.start_proxy(pod)
        self.start_agent(pod, proxy=proxy)
        connected = await until(lambda: agent_id in world.streamspace.connected_agents(), within=15)
        cert_file = proxy.settings.state_dir / "tls.crt"
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        uri = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.UniformResourceIdentifier)[0]
        row = await self.in_streamspace(agent_id)
        self.expect(
            f"agent -> proxy -> approver: approved in StreamSpace, WebSocket open; the proxy "
            f"holds {uri}",
            connected and row is not None and row["approvalStatus"] == "approved",
        )
        key = self.agents[agent_id][1].api_key
        other_pod = await world.create_pod(session, annotations=PROXY_OPT_IN)
        other_proxy = await world.start_proxy(other_pod)
        self.start_agent(other_pod, proxy=other_proxy)
        await until(
            lambda: world.agent_id(other_pod) in world.streamspace.connected_agents(), within=15
        )
        status = await world.gate_connect(agent_id, key, certificate_of=other_proxy)
        self.expect(
            f"its key with another agent's certificate at the gate -> {status}", status == 403
        )
        serial = format(certificate.serial_number, "x")
        status, _ = await world.approver_admin("POST", f"/agent-certificates/{serial}/revoke")
        revoked_pem = cert_file.read_bytes()
        self.expect(
            f"an administrator revokes its certificate {serial[:12]}... -> {status}", status == 200
        )

        async def renewed() -> bool:
            try:  # the refused certificate's files go before the new ones come
                return cert_file.read_bytes() != revoked_pem
            except FileNotFoundError:
                return False

        re_enrolled = await until(renewed, within=15) and await until(
            lambda: agent_id in world.streamspace.connected_agents(), within=15
        )
        self.expect(
            "the gate closed its WebSocket; the proxy enrolled again, the agent reconnected",
            re_enrolled,
        )
        _, listed = await world.approver_admin("GET", f"/agents/{agent_id}/certificates")
        reasons = [c["revokedReason"] or "live" for c in listed["certificates"]]
        self.expect(
            f"the approver's record of its certificates: {reasons}", reasons == ["revoked", "live"]
        )

    async def table(self) -> None:
        world = self.world
        listed = await world.streamspace_agents()
        human = world.streamspace.user_id(HUMAN_ADMIN.username)
        _, approver = await world.approver_admin("GET", "/agents")
        headers = (
            "agent", "namespace", "approver", "method", "reason",
            "StreamSpace", "approved by", "WebSocket",
        )  # fmt: skip
        rows = []
        for record in approver["agents"]:
            agent_id = str(record["agentId"])
            there = listed.get(agent_id)
            by = str(there.get("approvedBy") or "-") if there else "-"
            by = "alice (admin)" if by == human else ("approver" if there and by != "-" else by)
            rows.append(
                (
                    agent_id[len("k8s-prod-cluster-") :],
                    str(record.get("namespace") or self.namespace_of(agent_id)),
                    str(record["status"]),
                    str(record.get("approvalMethod") or "-"),
                    str(record["reason"]),
                    str(there["approvalStatus"]) if there else "(gone)",
                    by,
                    "open" if agent_id in world.streamspace.connected_agents() else "-",
                )
            )
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        print("\n" + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))

    def namespace_of(self, agent_id: str) -> str:
        entry = self.agents.get(agent_id)
        return entry[0] if entry else "-"

    async def run(self) -> int:
        try:
            async with self.world, aiohttp.ClientSession() as session:
                try:
                    await self.scenarios(session)
                    await self.table()
                finally:
                    for label in list(self.agents):
                        await self.stop_agent(label)
        except StackError as exc:
            print(f"\n{exc}")
            return 1
        if self.failures:
            print(f"\n{len(self.failures)} check(s) failed; logs in {self.world.work}")
            return 1
        print("\nAll scenarios ended as expected.")
        return 0


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="agent-bootstrap-demo-"))
    code = asyncio.run(Demo(World(work, agent_certificates=True)).run())
    if code == 0 and os.environ.get("DEMO_KEEP") != "1":
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"(keys, configs, logs and database kept in {work})")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
