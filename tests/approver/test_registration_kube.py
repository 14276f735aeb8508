"""Registrations with Kubernetes access: the live pod binds the token (through the local
Kubernetes API stand-in, via kubernetes-asyncio)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from kubernetes_asyncio.client import ApiClient
from multidict import CIMultiDict

from approver.domain.decision import DecisionPolicy
from approver.domain.records import AgentStatus
from approver.domain.requests import RegistrationRequest
from approver.kube.pods import KubePods
from approver.registration import Registrar, Registration
from approver.store import Store
from bootstrap_token import KeySet, PodRef, SigningKey, VerificationPolicy
from tests.approver.helpers import (
    AGENT_ID,
    AGENT_ID_PREFIX,
    ANNOTATION,
    AUDIENCE,
    ISSUER,
    NAMESPACE,
    OWNER,
    POD_NAME,
    SECOND_AGENT_ID,
    SECOND_POD_NAME,
    TRUST,
    Clock,
    RecordingSink,
    mint_token,
    registration_body,
)
from tests.kube_api import KubeApi, api_client, make_pod


@pytest.fixture
async def kube() -> AsyncIterator[KubeApi]:
    async with KubeApi() as server:
        yield server


@pytest.fixture
async def client(kube: KubeApi) -> AsyncIterator[ApiClient]:
    api = api_client(kube)
    try:
        yield api
    finally:
        await api.close()


@dataclass
class Kube:
    registrar: Registrar
    audit: RecordingSink
    store: Store
    api: KubeApi
    clock: Clock

    async def register(self, agent_id: str = AGENT_ID, *, token: str | None) -> Registration:
        request = RegistrationRequest.model_validate(registration_body(agent_id))
        headers = CIMultiDict({"X-Agent-API-Key": token} if token else {})
        return await self.registrar.register(request=request, headers=headers)


@pytest.fixture
def harness(store: Store, key_set: KeySet, kube: KubeApi, client: ApiClient) -> Kube:
    audit = RecordingSink()
    clock = Clock()
    registrar = Registrar(
        store=store,
        key_set=key_set,
        verification=VerificationPolicy(issuer=ISSUER, audience=AUDIENCE, trust=TRUST),
        policy=DecisionPolicy(auto_approve=True, agent_id_prefix=AGENT_ID_PREFIX, kubernetes=True),
        audit=audit,
        clock=clock,
        pods=KubePods(client, timeout_seconds=5),
        token_annotation=ANNOTATION,
    )
    return Kube(registrar=registrar, audit=audit, store=store, api=kube, clock=clock)


@pytest.fixture
def token(signing_key: SigningKey) -> str:
    return mint_token(signing_key)


def stamped(token: str, name: str = POD_NAME, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "annotations": {ANNOTATION: token},
        "owner": OWNER,
        "generate_name": name[:-5],
    }
    values.update(changes)
    return make_pod(NAMESPACE, name, **values)  # type: ignore[arg-type]


class TestLivePod:
    async def test_bound_to_the_live_pod(self, harness: Kube, token: str) -> None:
        """The live pod carries the token: approved, its UID recorded on agent and jti."""
        pod = harness.api.add_pod(stamped(token))
        result = await harness.register(token=token)
        assert (result.decision.http_status, result.decision.reason) == (
            200,
            "bootstrap_token_accepted",
        )
        assert result.agent is not None
        assert result.agent.pod_uid == pod["metadata"]["uid"]
        assert (result.agent.owner_kind, result.agent.owner_uid) == ("ReplicaSet", OWNER["uid"])
        gets = [r for r in harness.api.requests if r.path.endswith(f"/pods/{POD_NAME}")]
        assert len(gets) == 1
        assert f"pod_uid={pod['metadata']['uid']}" in (harness.audit.events[-1].message or "")

    @pytest.mark.parametrize(
        ("setup", "status", "reason"),
        [
            ("missing", 202, "pod_not_found"),
            ("terminating", 202, "pod_terminating"),
            ("other token", 403, "pod_token_mismatch"),
            ("other owner", 202, "pod_owner_mismatch"),
        ],
    )
    async def test_refused_bindings(
        self, harness: Kube, token: str, setup: str, status: int, reason: str
    ) -> None:
        """No pod, a terminating pod, another pod's token, another controller: not approved."""
        if setup == "terminating":
            harness.api.add_pod(stamped(token))
            harness.api.terminate_pod(NAMESPACE, POD_NAME)
        elif setup == "other token":
            harness.api.add_pod(stamped(token + "x"))
        elif setup == "other owner":
            harness.api.add_pod(stamped(token, owner={**OWNER, "uid": "another-rs"}))
        result = await harness.register(token=token)
        assert (result.decision.http_status, result.decision.reason) == (status, reason)
        assert result.decision.security is (status == 403)
        assert result.decision.claim_jti is False
        if status == 403:
            assert await harness.store.get_agent(AGENT_ID) is None

    async def test_copied_token_from_a_sibling_pod(self, harness: Kube, token: str) -> None:
        """A second pod of the ReplicaSet presenting the first pod's token is refused twice
        over: the jti is bound, and its own pod carries another token."""
        harness.api.add_pod(stamped(token))
        harness.api.add_pod(stamped("sibling-token", SECOND_POD_NAME))
        assert (await harness.register(token=token)).decision.http_status == 200
        copied = await harness.register(SECOND_AGENT_ID, token=token)
        assert (copied.decision.http_status, copied.decision.reason) == (403, "token_reused")
        assert harness.audit.events[-1].security is True

    async def test_pending_lookup_is_retried(self, harness: Kube, token: str) -> None:
        """A pod not there yet leaves the agent pending; its retry re-reads the pod and
        approves (a pending registration is re-evaluated)."""
        first = await harness.register(token=token)
        assert first.decision.reason == "pod_not_found"
        harness.api.add_pod(stamped(token))
        again = await harness.register(token=token)
        assert (again.decision.http_status, again.decision.effect.value) == (200, "activate")
        assert again.api_key is not None
        assert again.agent is not None
        assert again.agent.id == first.agent.id if first.agent else False

    async def test_api_unreachable(self, harness: Kube, token: str) -> None:
        """A pod read that fails (API down) is pending pod_lookup_failed, not an error."""
        await harness.api.close()
        result = await harness.register(token=token)
        assert (result.decision.http_status, result.decision.reason) == (202, "pod_lookup_failed")

    async def test_same_agent_retrying_gets_a_new_key(self, harness: Kube, token: str) -> None:
        """The bound agent presenting its token again (a lost answer) is approved again with a
        new key, after one more read of its live pod."""
        harness.api.add_pod(stamped(token))
        first = await harness.register(token=token)
        reads = len(harness.api.requests)
        again = await harness.register(token=token)
        assert again.decision.http_status == 200
        assert again.agent is not None
        assert first.agent is not None
        assert again.agent.id == first.agent.id
        assert again.api_key is not None
        assert again.api_key != first.api_key
        assert len(harness.api.requests) == reads + 1

    async def test_new_key_after_exp_while_the_pod_lives(self, harness: Kube, token: str) -> None:
        """A restarted container presents its pod's token past exp: a new key, since the pod
        still lives and carries that token."""
        harness.api.add_pod(stamped(token))
        first = await harness.register(token=token)
        harness.clock.now += 2 * 3600
        again = await harness.register(token=token)
        assert (again.decision.http_status, again.decision.reason) == (
            200,
            "bootstrap_token_accepted",
        )
        assert again.api_key is not None
        assert again.api_key != first.api_key

    async def test_no_new_key_once_the_pod_is_gone(self, harness: Kube, token: str) -> None:
        """The bound token presented again after its pod was deleted gets no key (403
        pod_not_found), and the record keeps its key."""
        pod = stamped(token)
        harness.api.add_pod(pod)
        first = await harness.register(token=token)
        harness.api.delete_pod(NAMESPACE, POD_NAME)
        again = await harness.register(token=token)
        assert (again.decision.http_status, again.decision.reason, again.api_key) == (
            403,
            "pod_not_found",
            None,
        )
        stored = await harness.store.get_agent(AGENT_ID)
        assert first.agent is not None
        assert stored is not None
        assert stored.api_key_hash == first.agent.api_key_hash

    async def test_no_new_key_for_another_pod_of_that_name(self, harness: Kube, token: str) -> None:
        """A pod of the same name but another UID carrying the copied token gets no key
        (403 pod_uid_mismatch, a security event)."""
        pod = stamped(token)
        harness.api.add_pod(pod)
        await harness.register(token=token)
        harness.api.delete_pod(NAMESPACE, POD_NAME)
        harness.api.add_pod(stamped(token))
        again = await harness.register(token=token)
        assert (again.decision.http_status, again.decision.reason, again.api_key) == (
            403,
            "pod_uid_mismatch",
            None,
        )
        assert harness.audit.events[-1].security

    async def test_statefulset_pod_recreated(self, harness: Kube, signing_key: SigningKey) -> None:
        """A named pod deleted and recreated (new UID, new token) re-binds its inactive agent."""
        old = mint_token(signing_key, pod=PodRef(name=POD_NAME))
        harness.api.add_pod(stamped(old, generate_name=None))
        first = await harness.register(token=old)
        assert first.agent is not None
        harness.api.delete_pod(NAMESPACE, POD_NAME)
        async with harness.store.transaction() as tx:
            record = await tx.get_agent(AGENT_ID, lock=True)
            assert record is not None
            from approver.domain.lifecycle import LifecycleEvent, apply

            await tx.update_agent(
                apply(
                    record,
                    LifecycleEvent.POD_DELETED,
                    at=record.updated_at,
                    actor="t",
                    reason="pod_deleted",
                )
            )
        new = mint_token(signing_key, pod=PodRef(name=POD_NAME))
        pod = harness.api.add_pod(stamped(new, generate_name=None))
        rebound = await harness.register(token=new)
        assert (rebound.decision.http_status, rebound.decision.effect.value) == (200, "rebind")
        assert rebound.agent is not None
        assert rebound.agent.status is AgentStatus.ACTIVE
        assert rebound.agent.pod_uid == pod["metadata"]["uid"]
        assert rebound.api_key is not None
