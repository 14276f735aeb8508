"""Per-agent API keys (shown once, only to the registration's own credential), pending
re-evaluation, and the auto-approval quota, below HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from approver.admin import AdminService
from approver.domain.agent_keys import is_agent_key, key_digest
from approver.domain.decision import DecisionPolicy
from approver.domain.quota import QuotaPolicy
from approver.domain.records import AgentStatus
from approver.domain.requests import RegistrationRequest
from approver.registration import Registrar, Registration
from approver.review import CredentialReviewer
from approver.store import Store
from approver.store.batcher import WriteBatcher
from bootstrap_token import KeySet, SigningKey, TrustPolicy, VerificationPolicy
from tests.approver.helpers import (
    AGENT_ID,
    AGENT_ID_PREFIX,
    AUDIENCE,
    GENERATE_NAME,
    ISSUER,
    NAMESPACE,
    TRUST,
    Clock,
    RecordingSink,
    mint_token,
    registration_body,
)


class Harness:
    def __init__(
        self,
        store: Store,
        key_set: KeySet,
        *,
        quota: QuotaPolicy | None = None,
        trust: TrustPolicy = TRUST,
    ) -> None:
        self.audit, self.clock, self.store = RecordingSink(), Clock(), store
        self.trust = trust
        self.key_set = key_set
        self.quota = quota or QuotaPolicy()
        self.registrar = self._registrar()
        self.admin = AdminService(store=store, audit=self.audit, clock=self.clock)
        self.reviewer = CredentialReviewer(store=store, audit=self.audit, clock=self.clock)

    def _registrar(self) -> Registrar:
        return Registrar(
            store=self.store,
            key_set=self.key_set,
            verification=VerificationPolicy(issuer=ISSUER, audience=AUDIENCE, trust=self.trust),
            policy=DecisionPolicy(
                auto_approve=True, agent_id_prefix=AGENT_ID_PREFIX, quota=self.quota
            ),
            audit=self.audit,
            clock=self.clock,
            writer=WriteBatcher(self.store, max_batch=16),
        )

    def retrust(self, trust: TrustPolicy) -> None:
        """The operator changed trust.namespaces (new settings, same store)."""
        self.trust = trust
        self.registrar = self._registrar()

    async def register(
        self, agent_id: str = AGENT_ID, *, headers: dict[str, str] | None = None
    ) -> Registration:
        request = RegistrationRequest.model_validate(registration_body(agent_id))
        return await self.registrar.register(request=request, headers=CIMultiDict(headers or {}))


@pytest.fixture
def harness(store: Store, key_set: KeySet) -> Harness:
    return Harness(store, key_set)


def bearer(token: str) -> dict[str, str]:
    return {"X-Agent-API-Key": token}


class TestApiKey:
    async def test_shown_once_on_approval(self, harness: Harness, signing_key: SigningKey) -> None:
        """The approving answer carries a new aga_ key; the store keeps only its hash; the key
        itself never comes back (a retry with the token gets another key, the key no key)."""
        token = mint_token(signing_key)
        first = await harness.register(headers=bearer(token))
        assert first.api_key is not None
        assert is_agent_key(first.api_key)
        assert first.agent is not None
        assert first.agent.api_key_hash == key_digest(first.api_key)
        again = await harness.register(headers=bearer(first.api_key))
        assert (again.decision.http_status, again.api_key) == (200, None)
        other = await harness.register(headers=bearer(token))
        assert other.api_key is not None
        assert other.api_key != first.api_key
        for event in harness.audit.events:
            assert first.api_key not in event.to_json()

    async def test_manual_approval_then_the_retry_gets_it_once(
        self, harness: Harness, signing_key: SigningKey
    ) -> None:
        """An agent that registered with a credential and was approved by an administrator
        gets its key on its next retry with that credential, and only once."""
        own = "streamspace-shared-agent-key-0123456789"
        pending = await harness.register(headers=bearer(own))
        assert (pending.decision.http_status, pending.api_key) == (202, None)
        await harness.admin.approve(agent_id=AGENT_ID, actor="alice")
        retry = await harness.register(headers=bearer(own))
        assert retry.decision.http_status == 200
        assert retry.api_key is not None
        again = await harness.register(headers=bearer(own))
        assert (again.decision.http_status, again.api_key) == (200, None)

    async def test_never_to_a_bare_agent_id(self, harness: Harness) -> None:
        """A registration made without any credential never releases a key, approved or not."""
        await harness.register()
        await harness.admin.approve(agent_id=AGENT_ID, actor="alice")
        retry = await harness.register()
        assert (retry.decision.http_status, retry.api_key) == (200, None)

    async def test_not_to_another_credential(self, harness: Harness) -> None:
        """A request with another credential gets 403, never the key."""
        await harness.register(headers=bearer("original-credential-0123456789"))
        await harness.admin.approve(agent_id=AGENT_ID, actor="alice")
        other = await harness.register(headers=bearer("guessed-credential-0123456789"))
        assert (other.decision.http_status, other.decision.reason, other.api_key) == (
            403,
            "credential_mismatch",
            None,
        )

    async def test_the_key_itself_proves_the_registration(
        self, harness: Harness, signing_key: SigningKey
    ) -> None:
        """An agent re-registering with its own key (no token at hand) is the known agent."""
        first = await harness.register(headers=bearer(mint_token(signing_key)))
        assert first.api_key is not None
        again = await harness.register(headers=bearer(first.api_key))
        assert (again.decision.http_status, again.decision.step.value) == (200, "known_agent")

    async def test_review(self, harness: Harness, signing_key: SigningKey) -> None:
        """The control plane's review: valid while active, named but unauthenticated once
        revoked, unknown for a made-up key, malformed for anything else."""
        first = await harness.register(headers=bearer(mint_token(signing_key)))
        assert first.api_key is not None
        ok = await harness.reviewer.review(api_key=first.api_key, actor="control-plane")
        assert (ok.authenticated, ok.reason) == (True, "ok")
        assert ok.agent is not None
        assert ok.agent.agent_id == AGENT_ID
        await harness.admin.revoke(agent_id=AGENT_ID, actor="alice")
        revoked = await harness.reviewer.review(api_key=first.api_key, actor="control-plane")
        assert (revoked.authenticated, revoked.reason) == (False, "agent_not_active")
        assert revoked.agent is not None
        assert revoked.agent.status is AgentStatus.INACTIVE
        from approver.domain.agent_keys import new_agent_key

        unknown = await harness.reviewer.review(api_key=new_agent_key(), actor="control-plane")
        assert (unknown.authenticated, unknown.reason, unknown.agent) == (
            False,
            "unknown_key",
            None,
        )
        malformed = await harness.reviewer.review(api_key="not-a-key", actor="control-plane")
        assert malformed.reason == "malformed_key"
        reviews = [e for e in harness.audit.events if e.event == "agent.review"]
        assert [e.actor for e in reviews] == ["control-plane"] * 4
        assert all(first.api_key not in e.to_json() for e in reviews)

    async def test_reapproval_after_revoke_issues_a_new_key(
        self, harness: Harness, signing_key: SigningKey
    ) -> None:
        """After revoke and re-approval the old key is dead; the next proving retry gets a new
        one."""
        token = mint_token(signing_key)
        first = await harness.register(headers=bearer(token))
        await harness.admin.revoke(agent_id=AGENT_ID, actor="alice")
        await harness.admin.approve(agent_id=AGENT_ID, actor="alice")
        retry = await harness.register(headers=bearer(token))
        assert retry.api_key is not None
        assert retry.api_key != first.api_key
        assert first.api_key is not None
        old = await harness.reviewer.review(api_key=first.api_key, actor="cp")
        assert old.reason == "unknown_key"


class TestReevaluation:
    async def test_trust_added_later(
        self, store: Store, key_set: KeySet, signing_key: SigningKey
    ) -> None:
        """A token from a namespace trusted only later approves on the agent's next retry."""
        harness = Harness(store, key_set, trust=TrustPolicy(namespaces=frozenset({"other"})))
        token = mint_token(signing_key)
        first = await harness.register(headers=bearer(token))
        assert first.decision.reason == "namespace_not_trusted"
        harness.retrust(TRUST)
        again = await harness.register(headers=bearer(token))
        assert (again.decision.http_status, again.decision.effect.value) == (200, "activate")
        assert again.agent is not None
        assert first.agent is not None
        assert again.agent.id == first.agent.id


class TestQuota:
    async def test_namespace_quota(
        self, store: Store, key_set: KeySet, signing_key: SigningKey
    ) -> None:
        """Beyond N active auto-approved agents in the namespace: pending quota_exceeded; once
        one leaves, the waiting agent's retry is approved."""
        harness = Harness(store, key_set, quota=QuotaPolicy(per_namespace=2))
        agents = [f"{AGENT_ID_PREFIX}-{GENERATE_NAME}q{n:04d}" for n in range(3)]
        tokens = [mint_token(signing_key) for _ in agents]
        results = [
            await harness.register(a, headers=bearer(t))
            for a, t in zip(agents, tokens, strict=True)
        ]
        assert [r.decision.reason for r in results] == [
            "bootstrap_token_accepted",
            "bootstrap_token_accepted",
            "quota_exceeded",
        ]
        assert results[2].agent is not None
        assert results[2].agent.status is AgentStatus.PENDING
        assert results[2].agent.jti is None
        await harness.admin.revoke(agent_id=agents[0], actor="alice")
        retry = await harness.register(agents[2], headers=bearer(tokens[2]))
        assert (retry.decision.http_status, retry.decision.reason) == (
            200,
            "bootstrap_token_accepted",
        )

    async def test_owner_quota_and_manual_approvals_do_not_count(
        self, store: Store, key_set: KeySet, signing_key: SigningKey
    ) -> None:
        """The per-owner limit counts only automatic approvals of that controller."""
        harness = Harness(store, key_set, quota=QuotaPolicy(per_owner=1))
        await harness.register(f"{AGENT_ID_PREFIX}-manual", headers=bearer("x" * 30))
        await harness.admin.approve(agent_id=f"{AGENT_ID_PREFIX}-manual", actor="alice")
        first = await harness.register(
            f"{AGENT_ID_PREFIX}-{GENERATE_NAME}a0001", headers=bearer(mint_token(signing_key))
        )
        second = await harness.register(
            f"{AGENT_ID_PREFIX}-{GENERATE_NAME}a0002", headers=bearer(mint_token(signing_key))
        )
        assert (first.decision.reason, second.decision.reason) == (
            "bootstrap_token_accepted",
            "quota_exceeded",
        )
        assert second.agent is not None
        assert second.agent.namespace == NAMESPACE
