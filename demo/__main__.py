"""`make demo`: run the main job end to end on loopback and print what happened.

1. ``certs-tooling init --local`` writes a CA, serving certificates and the signing key/JWKS.
2. The webhook and the approver start as real processes (their console scripts) over TLS, the
   approver on SQLite, auto-approval on for namespace ``streamspace``.
3. Real AdmissionReviews (StreamSpace's k8s-agent pod in the ReplicaSet envelope captured from a
   real cluster, see tests/fixtures) go to the webhook; each returned JSON Patch is applied with
   the ``jsonpatch`` library; the API server's name generation and the downward API are simulated;
   agents register exactly as StreamSpace's k8s-agent does.
4. A table of agents, status, approval method and reason; exit 0 only if every scenario ended as
   expected.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from demo.agent import StreamSpaceAgent, pod_env
from demo.apiserver import admit, generated_name, load_deployment, streamspace_review
from demo.stack import ANNOTATION, Stack, StackError

RETRY_SECONDS = 0.5  # StreamSpace's agent waits 30 s between pending retries; shortened here.


@dataclass
class Row:
    agent: str
    namespace: str
    status: str
    method: str
    reason: str


def agent_for(pod: dict[str, Any]) -> StreamSpaceAgent:
    """StreamSpace's k8s-agent in ``pod``: its env resolved as the kubelet would."""
    env = pod_env(
        load_deployment(),
        pod_name=pod["metadata"]["name"],
        annotations=pod["metadata"].get("annotations"),
    )
    return StreamSpaceAgent(env=env)


class Demo:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.rows: list[Row] = []
        self.failures: list[str] = []

    def expect(self, what: str, ok: bool) -> None:
        print(f"           {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures.append(what)

    async def admit(
        self, session: aiohttp.ClientSession, review: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return await admit(
            session, self.stack.webhook_url, review, client_ssl=self.stack.client_ssl
        )

    async def register(
        self, session: aiohttp.ClientSession, agent: StreamSpaceAgent, *, attempts: int = 1
    ) -> tuple[int, dict[str, Any]]:
        result = await agent.register(
            session,
            self.stack.approver_url,
            ssl_context=self.stack.client_ssl,
            retry_seconds=RETRY_SECONDS,
            max_attempts=attempts,
        )
        return result.status, result.body

    async def admin(
        self, session: aiohttp.ClientSession, method: str, path: str
    ) -> tuple[int, Any]:
        async with session.request(
            method,
            f"{self.stack.approver_url}/api/v1/admin{path}",
            headers={"Authorization": f"Bearer {self.stack.admin_token}"},
            ssl=self.stack.client_ssl,
        ) as resp:
            return resp.status, await resp.json()

    async def scenarios(self, session: aiohttp.ClientSession) -> None:
        print("\n1. HPA scales StreamSpace's k8s-agent up in trusted namespace 'streamspace'")
        response, pod = await self.admit(
            session, streamspace_review(namespace="streamspace", uid="uid-1", rs_hash="7d9f8b6c5")
        )
        audit = response.get("auditAnnotations", {})
        token = pod["metadata"].get("annotations", {}).get(ANNOTATION, "")
        self.expect(
            f"webhook stamped the pod (decision={audit.get('decision')}, jti={audit.get('jti')})",
            bool(token) and audit.get("decision") == "stamped",
        )
        agent_a = agent_for(pod)
        status, body = await self.register(session, agent_a)
        self.expect(
            f"agent {agent_a.agent_id} -> {status} {body.get('approvalStatus')} "
            f"({body.get('approvalMethod')})",
            status == 200 and body.get("approvalMethod") == "namespace",
        )
        status, body = await self.register(session, agent_a)
        self.expect(f"same agent retrying -> {status} (idempotent)", status == 200)

        print("\n2. The same token copied onto a second agent")
        copied = json.loads(json.dumps(pod))
        copied["metadata"]["name"] = generated_name(pod["metadata"]["generateName"])
        agent_b = agent_for(copied)
        status, body = await self.register(session, agent_b)
        refused_reason = str(body.get("reason", "-"))
        self.expect(
            f"agent {agent_b.agent_id} -> {status} {body.get('approvalStatus')} "
            f"(reason={refused_reason})",
            status == 403,
        )

        print("\n3. An agent pod in untrusted namespace 'team-sandbox' (came with a planted token)")
        planted = streamspace_review(
            namespace="team-sandbox",
            uid="uid-2",
            rs_hash="5c6b7a8d9",
            annotations={ANNOTATION: token},
        )
        response, pod_c = await self.admit(session, planted)
        self.expect(
            f"webhook removed the planted annotation (decision="
            f"{response.get('auditAnnotations', {}).get('decision')}, "
            f"warnings={response.get('warnings')})",
            ANNOTATION not in pod_c["metadata"].get("annotations", {}),
        )
        agent_c = agent_for(pod_c)
        status, body = await self.register(session, agent_c, attempts=2)
        self.expect(
            f"agent {agent_c.agent_id} -> {status} {body.get('approvalStatus')} "
            f"(reason={body.get('reason')}, after 2 attempts)",
            status == 202,
        )

        print("\n4. An administrator approves the pending agent; its next retry is approved")
        code, _ = await self.admin(session, "POST", f"/agents/{agent_c.agent_id}/approve")
        self.expect(f"POST /api/v1/admin/agents/{agent_c.agent_id}/approve -> {code}", code == 200)
        status, body = await self.register(session, agent_c)
        self.expect(
            f"agent retry -> {status} {body.get('approvalStatus')} ({body.get('approvalMethod')})",
            status == 200 and body.get("approvalMethod") == "manual",
        )

        _, listing = await self.admin(session, "GET", "/agents")
        namespaces = {agent_a.agent_id: "streamspace", agent_c.agent_id: "team-sandbox"}
        for record in listing["agents"]:
            agent_id = str(record.get("agentId"))
            self.rows.append(
                Row(
                    agent=agent_id,
                    namespace=str(record.get("namespace") or namespaces.get(agent_id, "-")),
                    status=str(record.get("status", "-")),
                    method=str(record.get("approvalMethod") or "-"),
                    reason=str(record.get("reason") or "-"),
                )
            )
        stored = {r.agent: r for r in self.rows}
        self.expect(
            "store: the copied-token agent was never admitted",
            agent_b.agent_id not in stored or stored[agent_b.agent_id].status != "active",
        )
        if agent_b.agent_id not in stored:
            # A refused registration creates no agent record (nobody can squat an agent id with
            # a bad token); the refusal is in the audit log. The row shows the answer it got.
            self.rows.append(
                Row(agent_b.agent_id, "streamspace", "refused (403)", "-", refused_reason)
            )

    def print_table(self) -> None:
        headers = ("agent", "namespace", "status", "approval method", "reason")
        rows = [(r.agent, r.namespace, r.status, r.method, r.reason) for r in self.rows]
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
        print("\n" + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))

    async def run(self) -> int:
        try:
            async with self.stack, aiohttp.ClientSession() as session:
                await self.scenarios(session)
        except StackError as exc:
            print(f"\n{exc}")
            return 1
        self.print_table()
        if self.failures:
            print(f"\n{len(self.failures)} check(s) failed; logs in {self.stack.work}")
            return 1
        print("\nAll scenarios ended as expected.")
        return 0


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="agent-bootstrap-demo-"))
    code = asyncio.run(Demo(Stack(work)).run())
    if code == 0 and os.environ.get("DEMO_KEEP") != "1":
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"(keys, configs, logs and database kept in {work})")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
