"""The decision engine: a table of real tokens, verified for real, against store views."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from approver.domain.credentials import presented_credentials
from approver.domain.decision import (
    Decision,
    DecisionPolicy,
    Effect,
    Facts,
    Outcome,
    Step,
    StoreView,
    Verification,
    bound_pod_name,
    decide,
)
from approver.domain.records import AgentRecord, AgentStatus, ApprovalMethod
from approver.domain.requests import RegistrationRequest
from bootstrap_token import (
    BootstrapClaims,
    KeySet,
    PodRef,
    SigningKey,
    TokenError,
    TrustPolicy,
    VerificationPolicy,
    verify,
)
from tests.approver.helpers import (
    AGENT_ID,
    AGENT_ID_PREFIX,
    AUDIENCE,
    GENERATE_NAME,
    ISSUER,
    NAMESPACE,
    NOW,
    POD_NAME,
    SECOND_AGENT_ID,
    TRUST,
    alg_none,
    mint_token,
    registration_body,
    tamper,
)

OTHER_KEY = SigningKey.generate()
EXPIRY = NOW + 3600

TokenFactory = Callable[[SigningKey], str | None]
ViewFactory = Callable[[str | None, str | None], StoreView]


def _valid(key: SigningKey) -> str:
    return mint_token(key)


def _none(key: SigningKey) -> None:
    return None


def _record(
    status: AgentStatus,
    *,
    credential_hash: str | None,
    reason: str,
    approval_method: ApprovalMethod | None = None,
    api_key_hash: str | None = None,
    expired: bool = False,
) -> AgentRecord:
    at = datetime.fromtimestamp(NOW - 60, UTC)
    return AgentRecord(
        id=uuid.uuid4(),
        agent_id=AGENT_ID,
        platform="kubernetes",
        region="default",
        capacity={"maxCpu": 100, "maxMemory": 128, "maxSessions": 100},
        metadata={"namespace": NAMESPACE, "kubernetes": True},
        status=status,
        approval_method=approval_method,
        approved_by=None,
        approved_at=None,
        reason=reason,
        jti=None,
        kid=None,
        cluster=None,
        namespace=None,
        pod_name=None,
        pod_uid=None,
        credential_hash=credential_hash,
        created_at=at,
        updated_at=at,
        api_key_hash=api_key_hash,
        expired_at=at if expired else None,
    )


def no_record(credential_hash: str | None, jti: str | None) -> StoreView:
    return StoreView()


def known(
    status: AgentStatus,
    reason: str,
    *,
    same_credential: bool = True,
    approval_method: ApprovalMethod | None = None,
    key_issued: bool = True,
    expired: bool = False,
) -> ViewFactory:
    """A view holding this agent's record, made with this request's credential or another
    (an active record has its per-agent key issued unless ``key_issued`` is False)."""

    def view(credential_hash: str | None, jti: str | None) -> StoreView:
        stored = credential_hash if same_credential else "0" * 64
        key = "k" * 64 if key_issued and status is AgentStatus.ACTIVE else None
        return StoreView(
            agent=_record(
                status,
                credential_hash=stored,
                reason=reason,
                approval_method=approval_method,
                api_key_hash=key,
                expired=expired,
            )
        )

    return view


def known_without_credential(status: AgentStatus, reason: str) -> ViewFactory:
    """A view holding this agent's record, registered earlier without any token."""

    def view(credential_hash: str | None, jti: str | None) -> StoreView:
        return StoreView(agent=_record(status, credential_hash=None, reason=reason))

    return view


def jti_used_by(agent_id: str) -> ViewFactory:
    def view(credential_hash: str | None, jti: str | None) -> StoreView:
        return StoreView(jti_owner=agent_id)

    return view


@dataclass(frozen=True)
class Case:
    """One row: what is presented, what the store holds, and the expected decision."""

    id: str
    token: TokenFactory
    outcome: Outcome
    reason: str
    effect: Effect
    security: bool = False
    agent_id: str = AGENT_ID
    metadata: dict[str, Any] | None = None
    view: ViewFactory = no_record
    verify_at: int = NOW
    trust: TrustPolicy = TRUST
    auto_approve: bool = True
    approval_method: ApprovalMethod | None = None
    extra: dict[str, Any] = field(default_factory=dict)


A, P, R = Outcome.APPROVED, Outcome.PENDING, Outcome.REJECTED
NS = ApprovalMethod.NAMESPACE

CASES = [
    # -- step 2: a bootstrap token on an unknown agent -------------------------------------
    Case("valid token, generateName pod", _valid, A, "bootstrap_token_accepted", Effect.CREATE,
         approval_method=NS),
    Case("valid token, named pod (StatefulSet)",
         lambda k: mint_token(k, pod=PodRef(name=POD_NAME)), A, "bootstrap_token_accepted",
         Effect.CREATE, approval_method=NS),
    Case("token in the pod's last second of leeway", _valid, A, "bootstrap_token_accepted",
         Effect.CREATE, verify_at=EXPIRY + 29, approval_method=NS),
    Case("tampered claims", lambda k: tamper(mint_token(k)), R, "bad_signature", Effect.NONE,
         security=True),
    Case("signed by a key the approver does not know", lambda k: mint_token(OTHER_KEY), R,
         "unknown_kid", Effect.NONE, security=True),
    Case("alg none", lambda k: alg_none(mint_token(k)), R, "bad_alg", Effect.NONE,
         security=True),
    Case("wrong audience", lambda k: mint_token(k, audience="someone-else"), R,
         "wrong_audience", Effect.NONE, security=True),
    Case("wrong issuer", lambda k: mint_token(k, issuer="mallory"), R, "wrong_issuer",
         Effect.NONE, security=True),
    Case("not a token at all", lambda k: "not-a-jwt", R, "malformed", Effect.NONE,
         security=True),
    Case("expired", _valid, P, "expired", Effect.CREATE, verify_at=EXPIRY + 30),
    Case("not yet valid", _valid, P, "not_yet_valid", Effect.CREATE, verify_at=NOW - 31),
    Case("namespace no longer trusted at verify time", _valid, P, "namespace_not_trusted",
         Effect.CREATE, trust=TrustPolicy(namespaces=frozenset({"other"}))),
    Case("service account not allowed now", _valid, P, "service_account_not_allowed",
         Effect.CREATE,
         trust=TrustPolicy(namespaces=frozenset({NAMESPACE}),
                           service_accounts=frozenset({f"{NAMESPACE}:other"}))),
    # -- binding ---------------------------------------------------------------------------
    Case("agent of another ReplicaSet", _valid, P, "binding_not_provable", Effect.CREATE,
         agent_id=f"{AGENT_ID_PREFIX}-streamspace-k8s-agent-5c4b3a2d1-x2x7q"),
    Case("agent id without the prefix", _valid, P, "binding_not_provable", Effect.CREATE,
         agent_id=POD_NAME),
    Case("generateName with no suffix", _valid, P, "binding_not_provable", Effect.CREATE,
         agent_id=f"{AGENT_ID_PREFIX}-{GENERATE_NAME}"),
    Case("metadata.podName naming the agent id's pod", _valid, A, "bootstrap_token_accepted",
         Effect.CREATE, metadata={"podName": POD_NAME}, approval_method=NS),
    Case("metadata.podName cannot claim another agent id", _valid, P, "binding_not_provable",
         Effect.CREATE, agent_id="custom-agent-name", metadata={"podName": POD_NAME}),
    Case("another pod's agent id, own pod in metadata.podName", _valid, P,
         "binding_not_provable", Effect.CREATE, agent_id=f"{AGENT_ID_PREFIX}-other-pod-x2x7q",
         metadata={"podName": POD_NAME}),
    Case("metadata.podName not admitted", _valid, P, "binding_not_provable", Effect.CREATE,
         metadata={"podName": "other-pod-x2x7q"}),
    Case("metadata.podName not a string", _valid, P, "binding_not_provable", Effect.CREATE,
         metadata={"podName": 42}),
    Case("metadata.namespace (the agent's session namespace) is not compared", _valid, A,
         "bootstrap_token_accepted", Effect.CREATE,
         metadata={"namespace": "default", "kubernetes": True}, approval_method=NS),
    Case("metadata.podNamespace differs", _valid, P, "namespace_mismatch", Effect.CREATE,
         metadata={"namespace": NAMESPACE, "podNamespace": "default"}),
    Case("metadata.podNamespace equal", _valid, A, "bootstrap_token_accepted", Effect.CREATE,
         metadata={"podNamespace": NAMESPACE}, approval_method=NS),
    Case("no metadata.namespace", _valid, A, "bootstrap_token_accepted", Effect.CREATE,
         metadata={}, approval_method=NS),
    # -- the jti -----------------------------------------------------------------------------
    Case("copied token onto a second agent", _valid, R, "token_reused", Effect.NONE,
         security=True, agent_id=SECOND_AGENT_ID, view=jti_used_by(AGENT_ID)),
    Case("jti burnt earlier by this same agent", _valid, A, "bootstrap_token_accepted",
         Effect.CREATE, view=jti_used_by(AGENT_ID), approval_method=NS),
    # -- step 3 ------------------------------------------------------------------------------
    Case("no token", _none, P, "manual_approval_required", Effect.CREATE),
    Case("token, auto-approve disabled", _valid, P, "auto_approve_disabled", Effect.CREATE,
         auto_approve=False),
    Case("no token, auto-approve disabled", _none, P, "manual_approval_required",
         Effect.CREATE, auto_approve=False),
    # -- step 1: known agent, same credential --------------------------------------------------
    Case("bound token presented again (lost answer) gets a new key", _valid, A,
         "bootstrap_token_accepted", Effect.ISSUE_KEY,
         view=known(AgentStatus.ACTIVE, "bootstrap_token_accepted", approval_method=NS),
         approval_method=NS),
    Case("retry after an admin approved", _none, A, "approved_by_admin", Effect.NONE,
         view=known(AgentStatus.ACTIVE, "approved_by_admin",
                    approval_method=ApprovalMethod.MANUAL),
         approval_method=ApprovalMethod.MANUAL),
    Case("retry after an admin rejected", _valid, R, "rejected_by_admin", Effect.NONE,
         view=known(AgentStatus.REJECTED, "rejected_by_admin")),
    Case("retry while pending keeps the reason", _valid, P, "expired", Effect.NONE,
         verify_at=EXPIRY + 30, view=known(AgentStatus.PENDING, "expired")),
    Case("retry while pending is re-evaluated: trust added since", _valid, A,
         "bootstrap_token_accepted", Effect.ACTIVATE, approval_method=NS,
         view=known(AgentStatus.PENDING, "namespace_not_trusted")),
    Case("retry while pending with a new pending reason", _valid, P, "expired", Effect.REFRESH,
         verify_at=EXPIRY + 30, view=known(AgentStatus.PENDING, "namespace_not_trusted")),
    Case("retry of an expired pending registration is frozen", _valid, P, "pending_expired",
         Effect.NONE, view=known(AgentStatus.PENDING, "pending_expired", expired=True)),
    Case("retry of an agent whose pod was deleted", _valid, R, "pod_deleted", Effect.NONE,
         view=known(AgentStatus.INACTIVE, "pod_deleted")),
    Case("retry of a revoked agent", _valid, R, "revoked_by_admin", Effect.NONE,
         view=known(AgentStatus.INACTIVE, "revoked_by_admin")),
    Case("retry after an admin approved a token registration issues the key", _valid, A,
         "approved_by_admin", Effect.ISSUE_KEY,
         view=known(AgentStatus.ACTIVE, "approved_by_admin",
                    approval_method=ApprovalMethod.MANUAL, key_issued=False),
         approval_method=ApprovalMethod.MANUAL),
    Case("bound token presented past exp (restarted container) gets a new key", _valid, A,
         "bootstrap_token_accepted", Effect.ISSUE_KEY, verify_at=EXPIRY + 3600,
         view=known(AgentStatus.ACTIVE, "bootstrap_token_accepted", approval_method=NS),
         approval_method=NS),
    # -- known agent, other credential -----------------------------------------------------
    Case("bare agent id for an active agent", _none, R, "credential_mismatch", Effect.NONE,
         security=True, view=known(AgentStatus.ACTIVE, "bootstrap_token_accepted",
                                   same_credential=False)),
    Case("tampered token for an active agent", lambda k: tamper(mint_token(k)), R,
         "bad_signature", Effect.NONE, security=True,
         view=known(AgentStatus.ACTIVE, "bootstrap_token_accepted", same_credential=False)),
    Case("expired other token for an active agent", _valid, R, "credential_mismatch",
         Effect.NONE, security=True, verify_at=EXPIRY + 30,
         view=known(AgentStatus.ACTIVE, "bootstrap_token_accepted", same_credential=False)),
    Case("valid token for a pending manual agent re-binds it", _valid, A,
         "bootstrap_token_accepted", Effect.REBIND,
         view=known_without_credential(AgentStatus.PENDING, "manual_approval_required"),
         approval_method=NS),
    Case("valid token for an inactive agent (pod recreated)", _valid, A,
         "bootstrap_token_accepted", Effect.REBIND,
         view=known(AgentStatus.INACTIVE, "pod_deleted", same_credential=False),
         approval_method=NS),
    Case("valid token cannot undo an admin revoke", _valid, R, "revoked_by_admin",
         Effect.NONE,
         view=known(AgentStatus.INACTIVE, "revoked_by_admin", same_credential=False)),
    Case("sibling pod's token for an active agent", _valid, R, "credential_mismatch",
         Effect.NONE, security=True,
         view=known(AgentStatus.ACTIVE, "bootstrap_token_accepted", same_credential=False)),
    Case("named pod's new token for an active agent (StatefulSet recreated)",
         lambda k: mint_token(k, pod=PodRef(name=POD_NAME)), A, "bootstrap_token_accepted",
         Effect.REBIND, approval_method=NS,
         view=known(AgentStatus.ACTIVE, "bootstrap_token_accepted", same_credential=False)),
    Case("valid token cannot undo an admin reject", _valid, R, "rejected_by_admin",
         Effect.NONE, view=known(AgentStatus.REJECTED, "rejected_by_admin",
                                 same_credential=False)),
]  # fmt: skip


def _verify(token: str, key_set: KeySet, trust: TrustPolicy, now: int) -> Verification:
    policy = VerificationPolicy(issuer=ISSUER, audience=AUDIENCE, leeway_seconds=30, trust=trust)
    try:
        return verify(token, key_set, policy, now=now)
    except TokenError as exc:
        return exc


def _decide(case: Case, signing_key: SigningKey, key_set: KeySet) -> Decision:
    token = case.token(signing_key)
    credential_hash = hashlib.sha256(token.encode()).hexdigest() if token else None
    verification = (
        _verify(token, key_set, case.trust, case.verify_at)
        if token is not None and case.auto_approve
        else None
    )
    jti = verification.jti if isinstance(verification, BootstrapClaims) else None
    request = RegistrationRequest.model_validate(
        registration_body(case.agent_id, metadata=case.metadata)
    )
    presented = presented_credentials({"X-Agent-Bootstrap-Token": token} if token else {})
    return decide(
        facts=Facts(
            request=request,
            presented=presented,
            verification=verification,
            pod_name=bound_pod_name(request, agent_id_prefix=AGENT_ID_PREFIX),
        ),
        view=case.view(credential_hash, jti),
        policy=DecisionPolicy(auto_approve=case.auto_approve, agent_id_prefix=AGENT_ID_PREFIX),
    )


class TestDecisionTable:
    @pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
    def test_decision(self, case: Case, signing_key: SigningKey, key_set: KeySet) -> None:
        """Each row's presented token, store view and settings give the row's decision."""
        decision = _decide(case, signing_key, key_set)
        assert (decision.outcome, decision.reason, decision.effect, decision.security) == (
            case.outcome,
            case.reason,
            case.effect,
            case.security,
        )
        assert decision.http_status == {A: 200, P: 202, R: 403}[case.outcome]
        assert decision.approval_method == case.approval_method

    def test_approval_burns_the_jti_once(self, signing_key: SigningKey, key_set: KeySet) -> None:
        """A first approval asks the store to burn the jti; a repeat by the same agent does not."""
        first = _decide(CASES[0], signing_key, key_set)
        again = _decide(
            Case("again", _valid, A, "bootstrap_token_accepted", Effect.CREATE,
                 view=jti_used_by(AGENT_ID)),
            signing_key,
            key_set,
        )  # fmt: skip
        assert (first.claim_jti, again.claim_jti) == (True, False)
        assert first.step is Step.BOOTSTRAP_TOKEN
        assert first.pod_name == POD_NAME
        assert first.claims is not None
        assert first.claims.namespace == NAMESPACE
        assert first.agent_status is AgentStatus.ACTIVE

    def test_pending_binding_keeps_the_verified_claims(
        self, signing_key: SigningKey, key_set: KeySet
    ) -> None:
        """A token that verified but cannot be bound still tells the record where it came from."""
        case = next(c for c in CASES if c.id == "metadata.podNamespace differs")
        decision = _decide(case, signing_key, key_set)
        assert decision.claims is not None
        assert (decision.claims.cluster, decision.pod_name) == ("prod-eu-1", POD_NAME)
        assert decision.agent_status is AgentStatus.PENDING
        assert decision.claim_jti is False

    def test_known_agent_step_is_recorded(self, signing_key: SigningKey, key_set: KeySet) -> None:
        """A same-credential retry is decided by step 1, which writes nothing."""
        case = next(c for c in CASES if c.id == "retry after an admin rejected")
        decision = _decide(case, signing_key, key_set)
        assert (decision.step, decision.effect) == (Step.KNOWN_AGENT, Effect.NONE)

    def test_unverified_token_is_a_caller_bug(self) -> None:
        """Deciding on a presented token that was never verified raises, rather than guessing."""
        request = RegistrationRequest.model_validate(registration_body())
        with pytest.raises(ValueError, match="verified"):
            decide(
                facts=Facts(
                    request=request,
                    presented=presented_credentials({"X-Agent-Bootstrap-Token": "a.b.c"}),
                    verification=None,
                ),
                view=StoreView(),
                policy=DecisionPolicy(auto_approve=True, agent_id_prefix=AGENT_ID_PREFIX),
            )


class TestBoundPodName:
    @pytest.mark.parametrize(
        ("agent_id", "metadata", "prefix", "expected"),
        [
            (AGENT_ID, {}, AGENT_ID_PREFIX, POD_NAME),
            (POD_NAME, {}, None, POD_NAME),
            (POD_NAME, {}, AGENT_ID_PREFIX, None),
            (f"{AGENT_ID_PREFIX}-", {}, AGENT_ID_PREFIX, None),
            (AGENT_ID, {"podName": POD_NAME}, AGENT_ID_PREFIX, POD_NAME),
            ("anything", {"podName": POD_NAME}, AGENT_ID_PREFIX, None),
            (AGENT_ID, {"podName": "other-pod"}, AGENT_ID_PREFIX, None),
            (AGENT_ID, {"podName": ""}, AGENT_ID_PREFIX, None),
            (POD_NAME, {"podName": ["x"]}, None, None),
            (POD_NAME + "_x", {}, None, None),
            (POD_NAME.upper(), {}, None, None),
        ],
        ids=[
            "prefix stripped",
            "no prefix: the agent id",
            "prefix missing",
            "nothing after the prefix",
            "podName agreeing",
            "podName cannot name another agent id's pod",
            "podName naming another pod",
            "empty podName",
            "podName not a string",
            "agent id with an underscore",
            "agent id not a DNS name",
        ],
    )
    def test_pod_name(
        self, agent_id: str, metadata: dict[str, Any], prefix: str | None, expected: str | None
    ) -> None:
        """The pod name is the agent id minus the prefix; metadata.podName must agree."""
        request = RegistrationRequest.model_validate(registration_body(agent_id, metadata=metadata))
        assert bound_pod_name(request, agent_id_prefix=prefix) == expected

    @given(
        prefix=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True),
        pod=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,60}[a-z0-9])?", fullmatch=True),
    )
    def test_streamspace_agent_id_round_trips(self, prefix: str, pod: str) -> None:
        """For any prefix and pod, AGENT_ID=$(AGENT_ID_PREFIX)-$(POD_NAME) gives the pod back."""
        request = RegistrationRequest.model_validate(
            registration_body(f"{prefix}-{pod}", metadata={})
        )
        assert bound_pod_name(request, agent_id_prefix=prefix) == pod
