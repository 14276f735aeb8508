"""Owners from verified evidence only, their Deployment, and bulk approval by Deployment.

Through the local Kubernetes API stand-in (pods and ReplicaSets in the API's JSON shape), the
registrar and the admin service on SQLite and PostgreSQL: an owner (the pod's ReplicaSet) and
its Deployment are recorded for every registration a verified credential binds to a live pod,
with auto-approval off too; never for a registration that only claims an agent id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient
from multidict import CIMultiDict

from approver.admin import AdminService
from approver.domain.binding import PodCheck, PodEvidence
from approver.domain.credential_outcome import CredentialOutcome, Verdict
from approver.domain.credentials import SERVICE_ACCOUNT_TOKEN_HEADER, presented_credentials
from approver.domain.decision import (
    DecisionPolicy,
    Facts,
    Outcome,
    StoreView,
    bound_pod_name,
    decide,
)
from approver.domain.records import AgentRecord, AgentStatus, ApprovalMethod, OwnerEvidence
from approver.domain.requests import RegistrationRequest
from approver.domain.workloads import OwnerLookupError
from approver.kube.pods import KubePods
from approver.kube.replicasets import KubeReplicaSets
from approver.registration import Registrar, Registration
from approver.store import AgentFilter, Store
from approver.store.transaction import Transaction
from bootstrap_token import (
    KeySet,
    OwnerRef,
    PodRef,
    SigningKey,
    VerificationPolicy,
    mint,
    verify,
)
from tests.approver.helpers import (
    AGENT_ID,
    AGENT_ID_PREFIX,
    ANNOTATION,
    AUDIENCE,
    ISSUER,
    NAMESPACE,
    NOW,
    OWNER,
    OWNER_UID,
    POD_NAME,
    REPLICASET,
    TRUST,
    VERIFICATION,
    Clock,
    RecordingSink,
    mint_token,
    registration_body,
    streamspace_claims,
)
from tests.kube_api import KubeApi, api_client, configuration, make_pod, make_replica_set

DEPLOYMENT = "streamspace-k8s-agent"
DEPLOYMENT_UID = str(uuid.uuid5(uuid.NAMESPACE_URL, DEPLOYMENT))
#: The ReplicaSet of the Deployment's next rollout (another pod-template hash).
NEXT_REPLICASET = DEPLOYMENT + "-5c4b3a2d1"
NEXT_OWNER = {"kind": "ReplicaSet", "name": NEXT_REPLICASET, "uid": str(uuid.uuid4())}
#: Another Deployment in the namespace, with its own ReplicaSet.
OTHER_DEPLOYMENT = "other-agent"
OTHER_DEPLOYMENT_UID = str(uuid.uuid4())
OTHER_REPLICASET = OTHER_DEPLOYMENT + "-6f7a8b9c0"
OTHER_OWNER = {"kind": "ReplicaSet", "name": OTHER_REPLICASET, "uid": str(uuid.uuid4())}
SA_TOKEN = "projected-service-account-token"


def _ref(owner: Mapping[str, str]) -> OwnerRef:
    return OwnerRef(kind=owner["kind"], name=owner["name"], uid=owner["uid"])


@pytest.fixture
async def kube() -> AsyncIterator[KubeApi]:
    async with KubeApi() as server:
        server.add_replica_set(
            make_replica_set(
                NAMESPACE,
                REPLICASET,
                uid=OWNER_UID,
                deployment={"name": DEPLOYMENT, "uid": DEPLOYMENT_UID},
            )
        )
        server.add_replica_set(
            make_replica_set(
                NAMESPACE,
                NEXT_REPLICASET,
                uid=NEXT_OWNER["uid"],
                deployment={"name": DEPLOYMENT, "uid": DEPLOYMENT_UID},
            )
        )
        server.add_replica_set(
            make_replica_set(
                NAMESPACE,
                OTHER_REPLICASET,
                uid=OTHER_OWNER["uid"],
                deployment={"name": OTHER_DEPLOYMENT, "uid": OTHER_DEPLOYMENT_UID},
            )
        )
        yield server


@pytest.fixture
async def client(kube: KubeApi) -> AsyncIterator[ApiClient]:
    api = api_client(kube)
    try:
        yield api
    finally:
        await api.close()


@dataclass
class FixedVerifier:
    """A step-4 verifier answering one outcome (the service-account path's shape: the lead's
    verifier reads the live pod and sets ``controller`` after the token verified)."""

    outcome: CredentialOutcome
    method: ApprovalMethod = ApprovalMethod.SERVICE_ACCOUNT

    async def verify(
        self, *, request: RegistrationRequest, headers: Mapping[str, str], now: float
    ) -> CredentialOutcome:
        if SERVICE_ACCOUNT_TOKEN_HEADER not in headers:
            return CredentialOutcome(Verdict.NOT_APPLICABLE, self.method, "not_presented")
        return self.outcome

    async def claim(self, tx: Transaction, outcome: CredentialOutcome, *, now: float) -> None:
        return None


@dataclass
class Harness:
    store: Store
    kube: KubeApi
    api: ApiClient
    key: SigningKey
    key_set: KeySet
    audit: RecordingSink = field(default_factory=RecordingSink)
    clock: Clock = field(default_factory=Clock)

    def registrar(
        self,
        *,
        auto_approve: bool,
        verifiers: tuple[FixedVerifier, ...] = (),
        owners: KubeReplicaSets | None = None,
    ) -> Registrar:
        return Registrar(
            store=self.store,
            key_set=self.key_set,
            verification=VerificationPolicy(issuer=ISSUER, audience=AUDIENCE, trust=TRUST),
            policy=DecisionPolicy(
                auto_approve=auto_approve, agent_id_prefix=AGENT_ID_PREFIX, kubernetes=True
            ),
            audit=self.audit,
            clock=self.clock,
            pods=KubePods(self.api, timeout_seconds=5),
            owners=owners or KubeReplicaSets(self.api, timeout_seconds=5),
            token_annotation=ANNOTATION,
            verifiers=verifiers,
        )

    def admin(self) -> AdminService:
        return AdminService(store=self.store, audit=self.audit, clock=self.clock)

    def token(self, owner: Mapping[str, str] = OWNER) -> str:
        """A token for a pod of ``owner`` (generateName ``<replicaset>-``)."""
        claims = streamspace_claims(pod=PodRef(generate_name=owner["name"] + "-"))
        return mint(claims.model_copy(update={"owner": _ref(owner)}), self.key, now=NOW)

    def pod(self, name: str, token: str | None, owner: Mapping[str, str] = OWNER) -> str:
        """Add a live pod of ``owner`` stamped with ``token``; returns its agent id."""
        self.kube.add_pod(
            make_pod(
                NAMESPACE,
                name,
                annotations={ANNOTATION: token} if token else {},
                owner=owner,
                generate_name=owner["name"] + "-",
            )
        )
        return f"{AGENT_ID_PREFIX}-{name}"

    def replica_set_reads(self) -> int:
        return sum("/replicasets/" in r.path for r in self.kube.requests)

    def pod_reads(self) -> int:
        return sum("/pods/" in r.path for r in self.kube.requests)


async def register(registrar: Registrar, agent_id: str = AGENT_ID, **headers: str) -> Registration:
    request = RegistrationRequest.model_validate(registration_body(agent_id))
    names = {"token": "X-Agent-Bootstrap-Token", "sa": SERVICE_ACCOUNT_TOKEN_HEADER}
    return await registrar.register(
        request=request,
        headers=CIMultiDict({names[k]: v for k, v in headers.items()}),
        client_ip="127.0.0.1",
    )


@pytest.fixture
def harness(
    store: Store, kube: KubeApi, client: ApiClient, signing_key: SigningKey, key_set: KeySet
) -> Harness:
    return Harness(store=store, kube=kube, api=client, key=signing_key, key_set=key_set)


def _owner_of(record: AgentRecord | None) -> tuple[Any, ...]:
    assert record is not None
    return (
        record.owner_uid,
        record.owner_deployment_name,
        record.owner_deployment_uid,
        record.owner_evidence,
    )


PROVEN = (OWNER_UID, DEPLOYMENT, DEPLOYMENT_UID, OwnerEvidence.LIVE_POD)
NOTHING = (None, None, None, None)


class TestBootstrapToken:
    async def test_recorded_with_auto_approval_off(self, harness: Harness) -> None:
        """Auto-approval off: the token is verified and its live pod checked anyway; the agent
        waits (auto_approve_disabled, nothing burnt, no key) with its ReplicaSet and Deployment
        recorded, so an administrator can approve the workload."""
        token = harness.token()
        harness.pod(POD_NAME, token)
        registrar = harness.registrar(auto_approve=False)
        result = await register(registrar, token=token)
        assert (result.decision.http_status, result.decision.reason) == (
            202,
            "auto_approve_disabled",
        )
        assert result.api_key is None
        assert _owner_of(result.agent) == PROVEN
        assert result.agent is not None
        assert (result.agent.namespace, result.agent.jti, result.agent.pod_uid is not None) == (
            NAMESPACE,
            None,
            True,
        )
        assert _owner_of(await harness.store.get_agent(AGENT_ID)) == PROVEN

    async def test_recorded_when_approved(self, harness: Harness) -> None:
        """Auto-approval on: the approved agent's owner comes with its Deployment."""
        token = harness.token()
        harness.pod(POD_NAME, token)
        result = await register(harness.registrar(auto_approve=True), token=token)
        assert (result.decision.http_status, result.decision.reason) == (
            200,
            "bootstrap_token_accepted",
        )
        assert _owner_of(result.agent) == PROVEN

    @pytest.mark.parametrize("auto_approve", [True, False])
    async def test_failed_live_pod_records_no_owner(
        self, harness: Harness, auto_approve: bool
    ) -> None:
        """A verified token whose live pod is owned by another controller records its claims
        but no owner (its claim is not the pod's controller), and no ReplicaSet is read."""
        token = harness.token()
        harness.pod(POD_NAME, token, owner=OTHER_OWNER)
        result = await register(harness.registrar(auto_approve=auto_approve), token=token)
        assert result.decision.http_status == 202
        assert result.agent is not None
        assert result.agent.namespace == NAMESPACE
        assert _owner_of(result.agent) == NOTHING
        assert harness.replica_set_reads() == 0

    async def test_token_for_another_pod_records_no_owner(self, harness: Harness) -> None:
        """A verified token presented for an agent id its pod claim does not admit (a copy
        from one pod of a ReplicaSet, registering under another workload's pod name) proves no
        owner, so bulk approving the token's ReplicaSet does not approve it. Before owners
        needed evidence, the token's owner claim was recorded on such a pending record."""
        token = harness.token()
        harness.pod(POD_NAME, token)
        impostor = harness.pod(OTHER_REPLICASET + "-zzzzz", None, owner=OTHER_OWNER)
        result = await register(harness.registrar(auto_approve=True), impostor, token=token)
        assert (result.decision.http_status, result.decision.reason) == (
            202,
            "binding_not_provable",
        )
        assert _owner_of(result.agent) == NOTHING
        approved = await harness.admin().bulk_approve(owner_uid=OWNER_UID, actor="alice")
        assert approved == []


class TestServiceAccountToken:
    def _outcome(self, pod_uid: str, **changes: Any) -> CredentialOutcome:
        values: dict[str, Any] = {
            "verdict": Verdict.ACCEPTED,
            "approval_method": ApprovalMethod.SERVICE_ACCOUNT,
            "reason": "service_account_token_accepted",
            "authenticated": True,
            "namespace": NAMESPACE,
            "service_account": "streamspace-agent",
            "pod_name": POD_NAME,
            "pod_uid": pod_uid,
            "controller": _ref(OWNER),
        }
        values.update(changes)
        return CredentialOutcome(**values)

    @pytest.mark.parametrize(
        ("auto_approve", "status", "reason"),
        [(True, 200, "service_account_token_accepted"), (False, 202, "auto_approve_disabled")],
    )
    async def test_owner_recorded(
        self, harness: Harness, auto_approve: bool, status: int, reason: str
    ) -> None:
        """An accepted service-account token whose live pod's controller was read records
        that owner and its Deployment, with auto-approval on or off."""
        harness.pod(POD_NAME, None)
        pod_uid = harness.kube.pods(NAMESPACE)[0]["metadata"]["uid"]
        verifier = FixedVerifier(self._outcome(pod_uid))
        registrar = harness.registrar(auto_approve=auto_approve, verifiers=(verifier,))
        result = await register(registrar, sa=SA_TOKEN)
        assert (result.decision.http_status, result.decision.reason) == (status, reason)
        assert _owner_of(result.agent) == PROVEN
        assert result.agent is not None
        assert result.agent.pod_uid == pod_uid

    async def test_outcome_for_another_pod_records_no_owner(self, harness: Harness) -> None:
        """An accepted token naming a pod that is not the agent's proves no owner."""
        outcome = self._outcome("uid-x", pod_name="another-pod-abcde")
        registrar = harness.registrar(auto_approve=True, verifiers=(FixedVerifier(outcome),))
        result = await register(registrar, sa=SA_TOKEN)
        assert (result.decision.http_status, result.decision.reason) == (
            202,
            "binding_not_provable",
        )
        assert _owner_of(result.agent) == NOTHING
        assert harness.replica_set_reads() == 0


class TestWithoutCredential:
    @pytest.mark.parametrize("auto_approve", [True, False])
    async def test_claimed_agent_id_records_no_owner(
        self, harness: Harness, auto_approve: bool
    ) -> None:
        """A registration presenting nothing, under the agent id of a live, stamped pod of
        the Deployment: no pod or ReplicaSet is read, no owner recorded, and neither bulk
        approval by the pod's ReplicaSet nor by its Deployment approves it."""
        harness.pod(POD_NAME, harness.token())
        result = await register(harness.registrar(auto_approve=auto_approve))
        assert (result.decision.http_status, result.decision.reason) == (
            202,
            "manual_approval_required",
        )
        assert _owner_of(result.agent) == NOTHING
        assert (harness.pod_reads(), harness.replica_set_reads()) == (0, 0)
        admin = harness.admin()
        assert await admin.bulk_approve(owner_uid=OWNER_UID, actor="alice") == []
        assert await admin.bulk_approve(deployment_uid=DEPLOYMENT_UID, actor="alice") == []
        stored = await harness.store.get_agent(AGENT_ID)
        assert stored is not None
        assert stored.status is AgentStatus.PENDING


class TestBulkApproveByDeployment:
    async def test_a_rollout(self, harness: Harness) -> None:
        """Two ReplicaSets of one Deployment (a rollout in progress) and another Deployment's,
        auto-approval off: bulk approval by the Deployment's UID approves exactly its pending
        agents, across both ReplicaSets; an agent claiming one of its pods' ids without a
        credential stays pending; by name and namespace selects the same."""
        registrar = harness.registrar(auto_approve=False)
        ours: list[str] = []
        for owner, suffix in [(OWNER, "aaaaa"), (OWNER, "bbbbb"), (NEXT_OWNER, "ccccc")]:
            token = harness.token(owner)
            agent_id = harness.pod(f"{owner['name']}-{suffix}", token, owner=owner)
            assert (await register(registrar, agent_id, token=token)).decision.http_status == 202
            ours.append(agent_id)
        other_token = harness.token(OTHER_OWNER)
        theirs = harness.pod(f"{OTHER_REPLICASET}-ddddd", other_token, owner=OTHER_OWNER)
        await register(registrar, theirs, token=other_token)
        claimed = harness.pod(f"{REPLICASET}-eeeee", None)
        await register(registrar, claimed)
        # Every pod of a ReplicaSet asks the same: one read per ReplicaSet.
        assert harness.replica_set_reads() == 3

        listed = await harness.admin().list_agents(
            actor="alice", where=AgentFilter(deployment_name=DEPLOYMENT, namespace=NAMESPACE)
        )
        assert sorted(a.agent_id for a in listed) == sorted(ours)
        approved = await harness.admin().bulk_approve(deployment_uid=DEPLOYMENT_UID, actor="alice")
        assert sorted(a.agent_id for a in approved) == sorted(ours)
        for agent_id in ours:
            record = await harness.store.get_agent(agent_id)
            assert record is not None
            assert (record.status, record.reason) == (AgentStatus.ACTIVE, "approved_by_admin")
        for agent_id in (theirs, claimed):
            record = await harness.store.get_agent(agent_id)
            assert record is not None
            assert record.status is AgentStatus.PENDING
        event = harness.audit.events[-1]
        assert event.event == "admin.bulk_approve"
        assert f"deployment_uid={DEPLOYMENT_UID}" in (event.message or "")
        assert "count=3" in (event.message or "")
        # The approved agents get their key at their next registration with their token.
        again = await harness.admin().bulk_approve(
            deployment_name=DEPLOYMENT, namespace=NAMESPACE, actor="alice"
        )
        assert again == []

    async def test_by_name_needs_a_namespace(self, harness: Harness) -> None:
        """A Deployment name is unique only in its namespace; exactly one workload is named."""
        admin = harness.admin()
        with pytest.raises(ValueError, match="namespace"):
            await admin.bulk_approve(deployment_name=DEPLOYMENT, actor="alice")
        with pytest.raises(ValueError, match="exactly one"):
            await admin.bulk_approve(
                owner_uid=OWNER_UID, deployment_uid=DEPLOYMENT_UID, actor="alice"
            )


class TestReplicaSetRead:
    async def test_failure_leaves_the_registration_working(
        self, harness: Harness, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The ReplicaSet read failing (500) is a warning: the agent is decided as ever, its
        owner recorded without a Deployment; its next retry reads again and completes the
        record (refreshed although the reason is the same)."""
        token = harness.token()
        harness.pod(POD_NAME, token)
        harness.kube.replica_set_failure = 500
        registrar = harness.registrar(auto_approve=False)
        with caplog.at_level(logging.WARNING, logger="approver.registration"):
            first = await register(registrar, token=token)
        assert (first.decision.http_status, first.decision.reason) == (
            202,
            "auto_approve_disabled",
        )
        assert _owner_of(first.agent) == (OWNER_UID, None, None, OwnerEvidence.LIVE_POD)
        assert any("without its Deployment" in r.getMessage() for r in caplog.records)
        harness.kube.replica_set_failure = None
        again = await register(registrar, token=token)
        assert again.decision.effect.value == "refresh"
        assert _owner_of(await harness.store.get_agent(AGENT_ID)) == PROVEN
        # Nothing more to learn: the next retry writes nothing.
        third = await register(registrar, token=token)
        assert third.decision.effect.value == "none"

    async def test_failure_does_not_stop_an_approval(self, harness: Harness) -> None:
        """With auto-approval on, an unreadable ReplicaSet does not delay the approval."""
        token = harness.token()
        harness.pod(POD_NAME, token)
        harness.kube.replica_set_failure = 403
        result = await register(harness.registrar(auto_approve=True), token=token)
        assert (result.decision.http_status, result.decision.reason) == (
            200,
            "bootstrap_token_accepted",
        )
        assert _owner_of(result.agent) == (OWNER_UID, None, None, OwnerEvidence.LIVE_POD)

    async def test_unreachable_api(self, harness: Harness) -> None:
        """An unreachable API for the ReplicaSet (another client, port closed) is the same."""
        token = harness.token()
        harness.pod(POD_NAME, token)
        unreachable = configuration(harness.kube)
        unreachable.host = "http://127.0.0.1:9"  # discard: nothing listens
        dead = ApiClient(configuration=unreachable)
        try:
            owners = KubeReplicaSets(dead, timeout_seconds=2)
            registrar = harness.registrar(auto_approve=True, owners=owners)
            result = await register(registrar, token=token)
        finally:
            await dead.close()
        assert result.decision.http_status == 200
        assert _owner_of(result.agent) == (OWNER_UID, None, None, OwnerEvidence.LIVE_POD)


class TestKubeReplicaSets:
    async def test_answers_and_cache(self, kube: KubeApi, client: ApiClient) -> None:
        """The Deployment of a ReplicaSet, read once per UID; a bare ReplicaSet has none
        (cached too); a missing one or one under another UID has none (not cached)."""
        bare_uid = str(uuid.uuid4())
        kube.add_replica_set(make_replica_set(NAMESPACE, "bare-agent-1a2b3c4d5", uid=bare_uid))
        source = KubeReplicaSets(client, timeout_seconds=5)
        owner = _ref(OWNER)
        expected = OwnerRef(kind="Deployment", name=DEPLOYMENT, uid=DEPLOYMENT_UID)
        assert await source.deployment_of(NAMESPACE, owner) == expected
        assert await source.deployment_of(NAMESPACE, owner) == expected
        bare = OwnerRef(kind="ReplicaSet", name="bare-agent-1a2b3c4d5", uid=bare_uid)
        assert await source.deployment_of(NAMESPACE, bare) is None
        assert await source.deployment_of(NAMESPACE, bare) is None
        missing = OwnerRef(kind="ReplicaSet", name="gone-1a2b3c4d5", uid=str(uuid.uuid4()))
        assert await source.deployment_of(NAMESPACE, missing) is None
        recreated = OwnerRef(kind="ReplicaSet", name=REPLICASET, uid=str(uuid.uuid4()))
        assert await source.deployment_of(NAMESPACE, recreated) is None
        reads = [r.path for r in kube.requests if "/replicasets/" in r.path]
        assert len(reads) == 4
        assert reads[0] == f"/apis/apps/v1/namespaces/{NAMESPACE}/replicasets/{REPLICASET}"
        assert source.cached == 2

    async def test_cache_is_bounded_and_ages(self, kube: KubeApi, client: ApiClient) -> None:
        """At most ``cache_size`` ReplicaSets are kept (least recently used out), each for
        ``cache_seconds``."""
        clock = Clock(now=0.0)
        source = KubeReplicaSets(
            client, timeout_seconds=5, cache_size=2, cache_seconds=60, clock=clock
        )
        owners = [_ref(OWNER), _ref(NEXT_OWNER), _ref(OTHER_OWNER)]
        for owner in owners:
            await source.deployment_of(NAMESPACE, owner)
        assert source.cached == 2
        reads = len(kube.requests)
        await source.deployment_of(NAMESPACE, owners[2])
        assert len(kube.requests) == reads
        clock.now += 61
        await source.deployment_of(NAMESPACE, owners[2])
        assert len(kube.requests) == reads + 1

    async def test_errors(self, kube: KubeApi, client: ApiClient) -> None:
        """An API error is an OwnerLookupError, not cached."""
        source = KubeReplicaSets(client, timeout_seconds=5)
        kube.replica_set_failure = 500
        with pytest.raises(OwnerLookupError, match="500"):
            await source.deployment_of(NAMESPACE, _ref(OWNER))
        assert source.cached == 0


class TestDecision:
    """The pure rule: which decisions carry an owner."""

    def _decide(
        self,
        signing_key: SigningKey,
        key_set: KeySet,
        *,
        auto_approve: bool,
        agent_id: str = AGENT_ID,
        pod: PodEvidence | None = None,
        existing: AgentRecord | None = None,
        deployments: Mapping[str, OwnerRef] | None = None,
    ) -> Any:
        token = mint_token(signing_key)
        request = RegistrationRequest.model_validate(registration_body(agent_id))
        facts = Facts(
            request=request,
            presented=presented_credentials({"X-Agent-Bootstrap-Token": token}),
            verification=verify(token, key_set, VERIFICATION, now=NOW),
            pod_name=bound_pod_name(request, agent_id_prefix=AGENT_ID_PREFIX),
            pod=pod,
            deployments=deployments or {},
        )
        return decide(
            facts=facts,
            view=StoreView(agent=existing),
            policy=DecisionPolicy(
                auto_approve=auto_approve,
                agent_id_prefix=AGENT_ID_PREFIX,
                kubernetes=pod is not None,
            ),
        )

    def test_auto_approval_off_keeps_the_binding(
        self, signing_key: SigningKey, key_set: KeySet
    ) -> None:
        """Auto-approval off, live pod checked: pending, nothing burnt, the owner proven."""
        deployment = OwnerRef(kind="Deployment", name=DEPLOYMENT, uid=DEPLOYMENT_UID)
        decision = self._decide(
            signing_key,
            key_set,
            auto_approve=False,
            pod=PodEvidence(PodCheck.OK, "pod-uid"),
            deployments={OWNER_UID: deployment},
        )
        assert (decision.outcome, decision.reason) == (Outcome.PENDING, "auto_approve_disabled")
        assert (decision.claim_jti, decision.issue_key, decision.approval_method) == (
            False,
            False,
            None,
        )
        assert (decision.owner, decision.deployment, decision.owner_evidence) == (
            _ref(OWNER),
            deployment,
            OwnerEvidence.LIVE_POD,
        )
        assert decision.pod_uid == "pod-uid"

    @pytest.mark.parametrize("check", [PodCheck.NOT_FOUND, PodCheck.OWNER_MISMATCH])
    def test_no_owner_without_the_live_pod(
        self, signing_key: SigningKey, key_set: KeySet, check: PodCheck
    ) -> None:
        """A verified token whose live pod failed the checks keeps its claims, not its owner."""
        decision = self._decide(
            signing_key, key_set, auto_approve=True, pod=PodEvidence(check, None)
        )
        assert decision.outcome is Outcome.PENDING
        assert decision.claims is not None
        assert decision.owner is None

    def test_retry_proving_the_owner_refreshes(
        self, signing_key: SigningKey, key_set: KeySet
    ) -> None:
        """A pending record without a proven owner (made before evidence was tracked, or by a
        retry that could not read the pod) is refreshed by a retry that proves it, though the
        reason is the same; one holding it already is left alone."""
        at = datetime.fromtimestamp(NOW, UTC)
        base = AgentRecord(
            id=uuid.uuid4(),
            agent_id=AGENT_ID,
            platform="kubernetes",
            region=None,
            capacity=None,
            metadata={},
            status=AgentStatus.PENDING,
            approval_method=None,
            approved_by=None,
            approved_at=None,
            reason="auto_approve_disabled",
            jti=None,
            kid=None,
            cluster=None,
            namespace=None,
            pod_name=None,
            pod_uid=None,
            credential_hash=None,
            created_at=at,
            updated_at=at,
        )
        pod = PodEvidence(PodCheck.OK, "pod-uid")
        decision = _retry(signing_key, key_set, base, pod)
        assert (decision.reason, decision.effect.value) == ("auto_approve_disabled", "refresh")
        proven = replace(
            base,
            owner_kind="ReplicaSet",
            owner_name=REPLICASET,
            owner_uid=OWNER_UID,
            owner_evidence=OwnerEvidence.LIVE_POD,
        )
        assert _retry(signing_key, key_set, proven, pod).effect.value == "none"


def _retry(signing_key: SigningKey, key_set: KeySet, record: AgentRecord, pod: PodEvidence) -> Any:
    """The decision on a retry presenting the credential ``record`` was made with (auto-approval
    off, the live pod as ``pod``)."""
    token = mint_token(signing_key)
    presented = presented_credentials({"X-Agent-Bootstrap-Token": token})
    request = RegistrationRequest.model_validate(registration_body(AGENT_ID))
    facts = Facts(
        request=request,
        presented=presented,
        verification=verify(token, key_set, VERIFICATION, now=NOW),
        pod_name=bound_pod_name(request, agent_id_prefix=AGENT_ID_PREFIX),
        pod=pod,
    )
    return decide(
        facts=facts,
        view=StoreView(agent=replace(record, credential_hash=presented.primary)),
        policy=DecisionPolicy(auto_approve=False, agent_id_prefix=AGENT_ID_PREFIX, kubernetes=True),
    )
