"""The slots for decision steps 3 and 4: a verifier's outcome decides when step 2 did not, its
claim runs in the approval's transaction, and the engine checks the binding."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pytest
from multidict import CIMultiDict

from approver.domain.credential_outcome import CredentialOutcome, Verdict
from approver.domain.credentials import sha256_hex
from approver.domain.decision import DecisionPolicy
from approver.domain.records import AgentStatus, ApprovalMethod
from approver.domain.requests import RegistrationRequest
from approver.registration import Registrar, Registration
from approver.store import Store, Transaction
from bootstrap_token import KeySet, SigningKey, VerificationPolicy, fingerprint
from tests.approver.helpers import (
    AGENT_ID,
    AGENT_ID_PREFIX,
    AUDIENCE,
    ISSUER,
    NAMESPACE,
    POD_NAME,
    TRUST,
    Clock,
    RecordingSink,
    mint_token,
    registration_body,
)

GOOD_KEY = "abk_good_0123456789abcdef"
BAD_KEY = "abk_forged_0123456789abcd"


@dataclass
class FakeApiKeys:
    """A step-3 verifier: GOOD_KEY is accepted, BAD_KEY refused as forged, others unknown."""

    claim_refusal: str | None = None
    claims: int = 0
    pod_name: str | None = None

    @property
    def method(self) -> ApprovalMethod:
        return ApprovalMethod.API_KEY

    async def verify(
        self, *, request: RegistrationRequest, headers: Mapping[str, str], now: float
    ) -> CredentialOutcome:
        key = headers.get("X-Agent-API-Key", "")
        if not key.startswith("abk_"):
            return CredentialOutcome(
                Verdict.NOT_APPLICABLE, ApprovalMethod.API_KEY, "not_presented"
            )
        if key == GOOD_KEY:
            return CredentialOutcome(
                Verdict.ACCEPTED,
                ApprovalMethod.API_KEY,
                "api_key_accepted",
                authenticated=True,
                credential=fingerprint(key),
                namespace=NAMESPACE,
                pod_name=self.pod_name,
            )
        return CredentialOutcome(
            Verdict.REFUSED,
            ApprovalMethod.API_KEY,
            "api_key_bad_secret",
            security=True,
            credential=fingerprint(key),
        )

    async def claim(self, tx: Transaction, outcome: CredentialOutcome, *, now: float) -> str | None:
        self.claims += 1
        assert tx.connection is not None
        return self.claim_refusal


def make(store: Store, key_set: KeySet, verifier: FakeApiKeys) -> Registrar:
    return Registrar(
        store=store,
        key_set=key_set,
        verification=VerificationPolicy(issuer=ISSUER, audience=AUDIENCE, trust=TRUST),
        policy=DecisionPolicy(auto_approve=True, agent_id_prefix=AGENT_ID_PREFIX),
        audit=RecordingSink(),
        clock=Clock(),
        verifiers=[verifier],
    )


async def register(registrar: Registrar, **headers: str) -> Registration:
    request = RegistrationRequest.model_validate(registration_body(AGENT_ID))
    return await registrar.register(
        request=request, headers=CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()})
    )


class TestSlots:
    async def test_accepted_key_approves(self, store: Store, key_set: KeySet) -> None:
        """An accepted step-3 outcome approves with approval_method api_key; the record keeps
        the key's hash, so the retry with it is step 1; the claim ran once."""
        verifier = FakeApiKeys()
        registrar = make(store, key_set, verifier)
        first = await register(registrar, X_Agent_API_Key=GOOD_KEY)
        assert (first.decision.http_status, first.decision.reason) == (200, "api_key_accepted")
        assert first.agent is not None
        assert first.agent.approval_method is ApprovalMethod.API_KEY
        assert first.agent.credential_hash == sha256_hex(GOOD_KEY)
        assert (first.agent.approved_by, first.agent.namespace) == ("api-key", NAMESPACE)
        assert first.api_key is not None
        again = await register(registrar, X_Agent_API_Key=GOOD_KEY)
        assert (again.decision.step.value, again.decision.http_status) == ("known_agent", 200)
        assert verifier.claims == 1

    async def test_forged_key_is_refused(self, store: Store, key_set: KeySet) -> None:
        """A security-relevant refusal is 403 and leaves no record."""
        result = await register(make(store, key_set, FakeApiKeys()), X_Agent_API_Key=BAD_KEY)
        assert (result.decision.http_status, result.decision.reason) == (403, "api_key_bad_secret")
        assert result.decision.security is True
        assert await store.get_agent(AGENT_ID) is None

    async def test_claim_refusal_waits(self, store: Store, key_set: KeySet) -> None:
        """A claim refused in the transaction (the key's last slot taken) leaves the agent
        pending with the claim's reason; nothing is approved, no key issued."""
        verifier = FakeApiKeys(claim_refusal="api_key_max_agents_reached")
        result = await register(make(store, key_set, verifier), X_Agent_API_Key=GOOD_KEY)
        assert (result.decision.http_status, result.decision.reason) == (
            202,
            "api_key_max_agents_reached",
        )
        assert result.agent is not None
        assert result.agent.status is AgentStatus.PENDING
        assert result.api_key is None

    @pytest.mark.parametrize(("pod", "status"), [(POD_NAME, 200), ("another-pod", 202)])
    async def test_outcome_pod_must_be_the_agents(
        self, store: Store, key_set: KeySet, pod: str, status: int
    ) -> None:
        """An outcome naming a pod approves only the agent speaking for that pod."""
        verifier = FakeApiKeys(pod_name=pod)
        result = await register(make(store, key_set, verifier), X_Agent_API_Key=GOOD_KEY)
        assert result.decision.http_status == status
        if status == 202:
            assert result.decision.reason == "binding_not_provable"

    async def test_bootstrap_token_decides_first(
        self, store: Store, key_set: KeySet, signing_key: SigningKey
    ) -> None:
        """With a valid bootstrap token and a key, step 2 approves; step 3 is not consulted
        for the decision (and claims nothing)."""
        verifier = FakeApiKeys()
        registrar = make(store, key_set, verifier)
        result = await register(
            registrar, X_Agent_Bootstrap_Token=mint_token(signing_key), X_Agent_API_Key=GOOD_KEY
        )
        assert (result.decision.http_status, result.decision.reason) == (
            200,
            "bootstrap_token_accepted",
        )
        assert verifier.claims == 0
