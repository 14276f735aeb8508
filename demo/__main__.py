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
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import yaml

from demo.agent import StreamSpaceAgent, pod_env

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
ANNOTATION = "agents.streamspace.io/bootstrap-token"
AGENT_ID_PREFIX = "k8s-prod-cluster"
ADMIN_NAME = "demo-admin"
RETRY_SECONDS = 0.5  # StreamSpace's agent waits 30 s between pending retries; shortened here.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_path(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@dataclass
class Row:
    agent: str
    namespace: str
    status: str
    method: str
    reason: str


def streamspace_review(namespace: str, uid: str, rs_hash: str) -> dict[str, Any]:
    """The AdmissionReview the API server sends for one StreamSpace k8s-agent pod (v1)."""
    review = json.loads(
        (FIXTURES / "admission/replicaset-pod-generatename.v1beta1.json").read_text()
    )
    review["apiVersion"] = "admission.k8s.io/v1"
    deployment = load_deployment()
    template = deployment["spec"]["template"]
    rs_name = f"{deployment['metadata']['name']}-{rs_hash}"
    review["request"]["uid"] = uid
    review["request"]["namespace"] = namespace
    review["request"]["object"] = {
        "metadata": {
            "generateName": f"{rs_name}-",
            "creationTimestamp": None,
            "labels": {**template["metadata"]["labels"], "pod-template-hash": rs_hash},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs_name,
                    "uid": f"rs-{rs_hash}-uid",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": template["spec"],
        "status": {},
    }
    return dict(review)


def load_deployment() -> dict[str, Any]:
    """StreamSpace's rendered k8s-agent Deployment, with the one-line chart change applied:
    ``AGENT_API_KEY`` comes from the bootstrap-token annotation (downward API) instead of a Secret.
    """
    deployment = yaml.safe_load((FIXTURES / "streamspace/k8s-agent-deployment.yaml").read_text())
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for var in container.get("env", []):
            if var["name"] == "AGENT_API_KEY":
                var["valueFrom"] = {
                    "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION}']"}
                }
    return dict(deployment)


def generated_name(generate_name: str) -> str:
    """What the API server appends to generateName: five random lowercase alphanumerics."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return generate_name + "".join(secrets.choice(alphabet) for _ in range(5))


class Demo:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.pki = work / "pki"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.webhook_port = free_port()
        self.approver_port = free_port()
        self.admin_token = secrets.token_urlsafe(32)
        self.rows: list[Row] = []
        self.failures: list[str] = []
        self.ssl = self.init_pki()

    # --- setup ----------------------------------------------------------------------------
    def init_pki(self) -> ssl.SSLContext:
        """Run `certs-tooling init`; return a client context trusting only the new CA."""
        run = subprocess.run(
            [bin_path("certs-tooling"), "init", "--out", str(self.pki), "--local"],
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            raise SystemExit(f"certs-tooling init failed: {run.stderr}")
        print(f"[pki]      {run.stdout.strip()}")
        return ssl.create_default_context(cafile=str(self.pki / "ca.crt"))

    def write_configs(self) -> tuple[Path, Path]:
        webhook_cfg = {
            "trust": {"namespaces": ["streamspace"]},
            "annotationKey": ANNOTATION,
            "cluster": "demo",
            "signingKeyFile": str(self.pki / "signing.key"),
            "tlsCertFile": str(self.pki / "webhook-tls.crt"),
            "tlsKeyFile": str(self.pki / "webhook-tls.key"),
            "host": "127.0.0.1",
            "port": self.webhook_port,
        }
        tokens = self.work / "admin-tokens"
        tokens.write_text(f"{ADMIN_NAME}:{self.admin_token}\n")
        tokens.chmod(0o600)
        approver_cfg = {
            "autoApprove": {"enabled": True},
            "trust": {"namespaces": ["streamspace"]},
            "token": {"jwksFile": str(self.pki / "jwks.json")},
            "agentIdPrefix": AGENT_ID_PREFIX,
            "databaseUrl": f"sqlite+aiosqlite:///{self.work / 'agents.db'}",
            "adminTokensFile": str(tokens),
            "tlsCertFile": str(self.pki / "approver-tls.crt"),
            "tlsKeyFile": str(self.pki / "approver-tls.key"),
            "host": "127.0.0.1",
            "port": self.approver_port,
        }
        w = self.work / "webhook.yaml"
        a = self.work / "approver.yaml"
        w.write_text(yaml.safe_dump(webhook_cfg))
        a.write_text(yaml.safe_dump(approver_cfg))
        return w, a

    def start(self, name: str, script: str, config: Path) -> None:
        log = (self.work / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [bin_path(script), "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.procs.append(proc)

    async def wait_healthy(self, session: aiohttp.ClientSession, name: str, port: int) -> None:
        url = f"https://localhost:{port}/healthz"
        for _ in range(100):
            try:
                async with session.get(url, ssl=self.ssl) as resp:
                    if resp.status == 200:
                        print(
                            f"[{name:8}] up on {url.removesuffix('/healthz')} (TLS, CA-only trust)"
                        )
                        return
            except aiohttp.ClientConnectionError:
                pass
            if any(p.poll() is not None for p in self.procs):
                break
            await asyncio.sleep(0.1)
        log = (self.work / f"{name}.log").read_text()
        raise SystemExit(f"{name} did not become healthy:\n{log}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    # --- the API server's part ------------------------------------------------------------
    async def admit(
        self, session: aiohttp.ClientSession, review: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Send the review to the webhook like the API server does; return (response, pod)."""
        async with session.post(
            f"https://localhost:{self.webhook_port}/mutate",
            json=review,
            ssl=self.ssl,
        ) as resp:
            answer = await resp.json()
            assert resp.status == 200, answer
        response = answer["response"]
        assert answer["apiVersion"] == review["apiVersion"]
        assert response["uid"] == review["request"]["uid"]
        assert response["allowed"] is True
        pod = review["request"]["object"]
        if "patch" in response:
            patch = json.loads(base64.b64decode(response["patch"]))
            pod = jsonpatch.apply_patch(pod, patch)
        # The API server then generates the name and persists the pod.
        pod.setdefault("metadata", {})
        if "name" not in pod["metadata"]:
            pod["metadata"]["name"] = generated_name(pod["metadata"]["generateName"])
        pod["metadata"]["namespace"] = review["request"]["namespace"]
        return response, pod

    # --- the agents -----------------------------------------------------------------------
    def agent_for(self, pod: dict[str, Any]) -> StreamSpaceAgent:
        env = pod_env(
            load_deployment(),
            pod_name=pod["metadata"]["name"],
            annotations=pod["metadata"].get("annotations"),
        )
        env["NAMESPACE"] = pod["metadata"]["namespace"]
        return StreamSpaceAgent(env=env)

    async def register(
        self, session: aiohttp.ClientSession, agent: StreamSpaceAgent, *, attempts: int = 1
    ) -> tuple[int, dict[str, Any]]:
        result = await agent.register(
            session,
            f"https://localhost:{self.approver_port}",
            ssl_context=self.ssl,
            retry_seconds=RETRY_SECONDS,
            max_attempts=attempts,
        )
        return result.status, result.body

    def expect(self, what: str, ok: bool) -> None:
        print(f"           {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures.append(what)

    async def admin(
        self, session: aiohttp.ClientSession, method: str, path: str
    ) -> tuple[int, Any]:
        async with session.request(
            method,
            f"https://localhost:{self.approver_port}/api/v1/admin{path}",
            headers={"Authorization": f"Bearer {self.admin_token}"},
            ssl=self.ssl,
        ) as resp:
            return resp.status, await resp.json()

    # --- scenarios ------------------------------------------------------------------------
    async def scenarios(self, session: aiohttp.ClientSession) -> None:
        print("\n1. HPA scales StreamSpace's k8s-agent up in trusted namespace 'streamspace'")
        response, pod = await self.admit(
            session, streamspace_review("streamspace", "uid-trusted-1", "7d9f8b6c5")
        )
        audit = response.get("auditAnnotations", {})
        token = pod["metadata"].get("annotations", {}).get(ANNOTATION, "")
        self.expect(
            f"webhook stamped the pod (decision={audit.get('decision')}, jti={audit.get('jti')})",
            bool(token) and audit.get("decision") == "stamped",
        )
        agent_a = self.agent_for(pod)
        status, body = await self.register(session, agent_a)
        self.expect(
            f"agent {agent_a.agent_id} -> {status} {body.get('approvalStatus')} "
            f"({body.get('approvalMethod')})",
            status == 200 and body.get("approvalMethod") == "namespace",
        )
        status, body = await self.register(session, agent_a)
        self.expect(f"same agent retrying -> {status} (idempotent)", status == 200)

        print("\n2. The same token copied onto a second agent")
        copied_pod = json.loads(json.dumps(pod))
        copied_pod["metadata"]["name"] = generated_name(pod["metadata"]["generateName"])
        agent_b = self.agent_for(copied_pod)
        status, body = await self.register(session, agent_b)
        self.expect(
            f"agent {agent_b.agent_id} -> {status} {body.get('approvalStatus')} "
            f"(reason={body.get('reason')})",
            status == 403,
        )

        print("\n3. An agent pod in untrusted namespace 'team-sandbox' (came with a planted token)")
        planted = streamspace_review("team-sandbox", "uid-untrusted-1", "5c6b7a8d9")
        planted["request"]["object"]["metadata"]["annotations"] = {ANNOTATION: token}
        response, pod_c = await self.admit(session, planted)
        self.expect(
            f"webhook removed the planted annotation (decision="
            f"{response.get('auditAnnotations', {}).get('decision')}, "
            f"warnings={response.get('warnings')})",
            ANNOTATION not in pod_c["metadata"].get("annotations", {}),
        )
        agent_c = self.agent_for(pod_c)
        status, body = await self.register(session, agent_c, attempts=2)
        self.expect(
            f"agent {agent_c.agent_id} -> {status} {body.get('approvalStatus')} "
            f"(reason={body.get('reason')})",
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

        code, listing = await self.admin(session, "GET", "/agents")
        agents = listing["agents"] if isinstance(listing, dict) else listing
        namespaces = {
            agent_a.agent_id: "streamspace",
            agent_b.agent_id: "streamspace",
            agent_c.agent_id: "team-sandbox",
        }
        for record in agents:
            agent_id = record.get("agentId") or record.get("agent_id")
            self.rows.append(
                Row(
                    agent=agent_id,
                    namespace=record.get("namespace") or namespaces.get(agent_id, "-"),
                    status=record.get("status", "-"),
                    method=record.get("approvalMethod") or record.get("approval_method") or "-",
                    reason=record.get("reason") or "-",
                )
            )
        by_id = {r.agent: r for r in self.rows}
        self.expect(
            "store: copied-token agent was never admitted",
            agent_b.agent_id not in by_id or by_id[agent_b.agent_id].status != "active",
        )

    def print_table(self) -> None:
        headers = ("agent", "namespace", "status", "approval method", "reason")
        rows = [(r.agent, r.namespace, r.status, r.method, r.reason) for r in self.rows]
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
        line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
        print("\n" + line)
        print("  ".join("-" * w for w in widths))
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))

    async def run(self) -> int:
        webhook_cfg, approver_cfg = self.write_configs()
        self.start("webhook", "agent-bootstrap-webhook", webhook_cfg)
        self.start("approver", "agent-bootstrap-approver", approver_cfg)
        try:
            async with aiohttp.ClientSession() as session:
                await self.wait_healthy(session, "webhook", self.webhook_port)
                await self.wait_healthy(session, "approver", self.approver_port)
                await self.scenarios(session)
        finally:
            self.stop()
        self.print_table()
        if self.failures:
            print(f"\n{len(self.failures)} check(s) failed; logs in {self.work}")
            return 1
        print("\nAll scenarios ended as expected.")
        return 0


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="agent-bootstrap-demo-"))
    keep = os.environ.get("DEMO_KEEP") == "1"
    code = asyncio.run(Demo(work).run())
    if code == 0 and not keep:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
