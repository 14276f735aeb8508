"""End to end: the real console scripts over real TLS on loopback, real payloads, StreamSpace's
real agent request. The services run as processes started by :class:`demo.stack.Stack`."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import pytest
import sqlalchemy as sa

from bootstrap_token import KeySet, VerificationPolicy, verify
from demo.__main__ import Demo
from demo.agent import StreamSpaceAgent, agent_for
from demo.apiserver import admit, generated_name, streamspace_review
from demo.stack import ANNOTATION, Stack
from demo.world import World
from tests.payloads import KUBECTL_REVIEW, REPLICASET_REVIEW, load_json

PG_DSN_ENV = "AGENT_BOOTSTRAP_TEST_PG_DSN"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Webhook + approver (SQLite) for the whole module, auto-approval on for 'streamspace'."""
    s = Stack(tmp_path_factory.mktemp("stack"), quiet=True)
    run(s.start())
    yield s
    codes = s.stop()
    assert codes == {"webhook": 0, "approver": 0}, (s.log("webhook"), s.log("approver"))


async def post_review(
    stack: Stack, review: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        return await admit(session, stack.webhook_url, review, client_ssl=stack.client_ssl)


async def register(stack: Stack, agent: StreamSpaceAgent) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        return await agent.register_once(session, stack.approver_url, ssl_context=stack.client_ssl)


def new_rs_hash() -> str:
    return secrets.token_hex(5)[:9]


class TestCapturedReviews:
    async def test_replicaset_fixture_as_captured(self, stack: Stack) -> None:
        """The captured v1beta1 ReplicaSet review (not an agent pod, namespace 'default') is
        allowed unchanged, answered in v1beta1 with its uid."""
        review = load_json(REPLICASET_REVIEW)
        response, pod = await post_review(stack, review)
        assert "patch" not in response
        assert response["uid"] == "6e397dab-317d-11e9-b50f-080027bbd2ff"
        assert response["auditAnnotations"]["decision"] == "skipped"
        assert pod["metadata"]["annotations"] == {
            "sidecar-injector.expedia.com/inject": "haystack-agent"
        }

    async def test_kubectl_fixture_as_captured(self, stack: Stack) -> None:
        """The captured kubectl pod (namespace test1, no agent label) is allowed unchanged."""
        response, _ = await post_review(stack, load_json(KUBECTL_REVIEW))
        assert "patch" not in response
        assert response["uid"] == "60df4b0b-8856-4ce7-9fb3-bc8034856995"

    async def test_named_agent_pod_is_bound_by_name(self, stack: Stack) -> None:
        """A named agent pod (the kubectl fixture made an agent in a trusted namespace) gets a
        token naming the pod, and an agent of exactly that pod name is approved."""
        review = load_json(KUBECTL_REVIEW)
        review["request"]["namespace"] = "streamspace"
        review["request"]["object"]["metadata"]["labels"]["app.kubernetes.io/component"] = (
            "k8s-agent"
        )
        _response, pod = await post_review(stack, review)
        token = pod["metadata"]["annotations"][ANNOTATION]
        claims = verify(
            token,
            KeySet.from_file(stack.pki / "jwks.json"),
            VerificationPolicy(issuer="agent-bootstrap-webhook", audience="agent-approver"),
            now=int(__import__("time").time()),
        )
        assert claims.pod.name == "test-pod01"
        assert claims.namespace == "streamspace"
        # The kubectl annotation with '/' in its key survives next to ours.
        assert "kubectl.kubernetes.io/last-applied-configuration" in pod["metadata"]["annotations"]
        agent = StreamSpaceAgent(
            env={"AGENT_ID": "k8s-prod-cluster-test-pod01", "AGENT_API_KEY": token}
        )
        status, body = await register(stack, agent)
        assert (status, body["approvalMethod"]) == (200, "namespace")


class TestStreamSpaceAgent:
    @pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
    async def test_stamped_agent_is_approved_at_once(self, stack: Stack, api_version: str) -> None:
        """A StreamSpace agent pod in a trusted namespace is stamped and approved on its first
        registration, with approval method 'namespace'."""
        review = streamspace_review(
            namespace="streamspace",
            uid=secrets.token_hex(8),
            rs_hash=new_rs_hash(),
            api_version=api_version,
        )
        response, pod = await post_review(stack, review)
        assert response["auditAnnotations"]["decision"] == "stamped"
        status, body = await register(stack, agent_for(pod))
        assert status == 200
        assert body["approvalStatus"] == "approved"
        assert body["approvalMethod"] == "namespace"
        assert body["agentId"] == f"k8s-prod-cluster-{pod['metadata']['name']}"

    async def test_copied_token_is_refused(self, stack: Stack) -> None:
        """A token already bound to one agent is refused (403, token_reused) for a second one."""
        _response, pod = await post_review(
            stack, streamspace_review(namespace="streamspace", uid="u-copy", rs_hash=new_rs_hash())
        )
        assert (await register(stack, agent_for(pod)))[0] == 200
        twin = json.loads(json.dumps(pod))
        twin["metadata"]["name"] = generated_name(pod["metadata"]["generateName"])
        status, body = await register(stack, agent_for(twin))
        assert (status, body["reason"]) == (403, "token_reused")

    async def test_used_token_under_any_agent_id_is_refused(self, stack: Stack) -> None:
        """A token bound to one agent is refused (403, token_reused) for another agent id, even
        one whose pod name the token does not admit: no pending record for a copied token."""
        _, pod = await post_review(
            stack, streamspace_review(namespace="streamspace", uid="u-any", rs_hash=new_rs_hash())
        )
        assert (await register(stack, agent_for(pod)))[0] == 200
        token = pod["metadata"]["annotations"][ANNOTATION]
        for agent_id in ("other", "k8s-prod-cluster-unrelated-pod"):
            agent = StreamSpaceAgent(env={"AGENT_ID": agent_id, "AGENT_API_KEY": token})
            status, body = await register(stack, agent)
            assert (status, body["reason"]) == (403, "token_reused")
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{stack.approver_url}/api/v1/admin/agents",
                headers={"Authorization": f"Bearer {stack.admin_token}"},
                ssl=stack.client_ssl,
            ) as resp,
        ):
            ids = {a["agentId"] for a in (await resp.json())["agents"]}
        assert "other" not in ids

    async def test_token_from_another_replicaset_is_not_bound(self, stack: Stack) -> None:
        """A token presented by a pod of another ReplicaSet is not bound to it (pending)."""
        _, pod = await post_review(
            stack, streamspace_review(namespace="streamspace", uid="u-bind", rs_hash=new_rs_hash())
        )
        stranger = json.loads(json.dumps(pod))
        stranger["metadata"]["name"] = "streamspace-k8s-agent-0000000-abcde"
        status, body = await register(stack, agent_for(stranger))
        assert (status, body["reason"]) == (202, "binding_not_provable")

    async def test_untrusted_namespace_stays_pending_until_approved(self, stack: Stack) -> None:
        """An agent from an untrusted namespace is pending; after the admin approves it, its next
        registration is approved with approval method 'manual'."""
        response, pod = await post_review(
            stack, streamspace_review(namespace="team-b", uid="u-untrusted", rs_hash=new_rs_hash())
        )
        assert "patch" not in response
        agent = agent_for(pod)
        status, body = await register(stack, agent)
        assert (status, body["approvalStatus"]) == (202, "pending")
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{stack.approver_url}/api/v1/admin/agents/{agent.agent_id}/approve",
                headers={"Authorization": f"Bearer {stack.admin_token}"},
                ssl=stack.client_ssl,
            ) as resp,
        ):
            assert resp.status == 200
        status, body = await register(stack, agent)
        assert (status, body["approvalMethod"]) == (200, "manual")

    async def test_tokens_never_reach_the_logs(self, stack: Stack) -> None:
        """After stamping and registering, neither service's log holds the token."""
        _, pod = await post_review(
            stack, streamspace_review(namespace="streamspace", uid="u-logs", rs_hash=new_rs_hash())
        )
        token = pod["metadata"]["annotations"][ANNOTATION]
        jti_holder = await register(stack, agent_for(pod))
        assert jti_holder[0] == 200
        signature = token.rsplit(".", 1)[1]
        for name in ("webhook", "approver"):
            log = stack.log(name)
            assert log, f"{name} wrote no audit line"
            assert signature not in log
            assert token.split(".")[1] not in log


class TestTls:
    @pytest.mark.parametrize("service", ["webhook", "approver"])
    async def test_client_trusting_another_ca_is_refused(
        self, stack: Stack, service: str, tmp_path: Path
    ) -> None:
        """Both services present certificates that only the installation's CA vouches for."""
        other = Stack.__new__(Stack)  # only for its PKI helper
        other.pki = tmp_path / "other"
        other.quiet = True
        foreign = other._init_pki()
        url = stack.webhook_url if service == "webhook" else stack.approver_url
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"{url}/healthz", ssl=foreign)

    async def test_plain_http_is_not_served(self, stack: Stack) -> None:
        """The webhook does not answer plain HTTP."""
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                await session.get(f"http://127.0.0.1:{stack.webhook_port}/healthz")


def test_auto_approval_off_keeps_the_old_behaviour(tmp_path: Path) -> None:
    """With autoApprove.enabled false (the default), even a stamped agent stays pending."""

    async def scenario() -> tuple[int, dict[str, Any]]:
        async with Stack(tmp_path, auto_approve=False, quiet=True) as s:
            _, pod = await post_review(
                s, streamspace_review(namespace="streamspace", uid="u-off", rs_hash="1a2b3c4d5")
            )
            return await register(s, agent_for(pod))

    status, body = run(scenario())
    assert (status, body["reason"]) == (202, "auto_approve_disabled")


def test_demo_runs_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`make demo`'s scenarios all end as expected; the table shows both sides: the stamped
    agent gone from StreamSpace after its pod was deleted, the manually approved one approved
    there by its administrator with its WebSocket open, and the two agents behind the agent
    proxy (client certificates) approved there and connected."""
    assert run(Demo(World(tmp_path, quiet=True, agent_certificates=True)).run()) == 0
    out = capsys.readouterr().out
    assert "All scenarios ended as expected." in out
    rows = [line.split() for line in out.splitlines() if line.startswith("streamspace-k8s-agent-")]
    assert [row[1:] for row in rows] == [
        ["streamspace", "inactive", "namespace", "pod_deleted", "(gone)", "-", "-"],
        ["team-sandbox", "active", "manual", "approved_in_control_plane", "approved", "alice",
         "(admin)", "open"],
        ["streamspace", "active", "namespace", "bootstrap_token_accepted", "approved",
         "approver", "open"],
        ["streamspace", "active", "namespace", "bootstrap_token_accepted", "approved",
         "approver", "open"],
    ]  # fmt: skip
    assert "the proxy enrolled again, the agent reconnected" in out


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database (SQLAlchemy URL) on the server of AGENT_BOOTSTRAP_TEST_PG_DSN."""
    dsn = os.environ.get(PG_DSN_ENV)
    if not dsn:
        pytest.skip(f"PostgreSQL not configured: set {PG_DSN_ENV}")
    server = sa.make_url(dsn).set(drivername="postgresql+asyncpg")
    name = f"agent_bootstrap_it_{secrets.token_hex(6)}"
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run(execute(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.postgres
def test_whole_path_on_postgresql(tmp_path: Path, pg_database: str) -> None:
    """The approver on a real PostgreSQL approves a stamped agent and refuses its copied token."""

    async def scenario() -> list[tuple[int, str]]:
        async with Stack(tmp_path, database_url=pg_database, quiet=True) as s:
            _, pod = await post_review(
                s, streamspace_review(namespace="streamspace", uid="u-pg", rs_hash="9f8e7d6c5")
            )
            first = await register(s, agent_for(pod))
            twin = json.loads(json.dumps(pod))
            twin["metadata"]["name"] = generated_name(pod["metadata"]["generateName"])
            second = await register(s, agent_for(twin))
            return [(first[0], str(first[1]["reason"])), (second[0], str(second[1]["reason"]))]

    assert run(scenario()) == [(200, "bootstrap_token_accepted"), (403, "token_reused")]
