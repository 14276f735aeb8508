"""Registrations end to end below HTTP: real tokens, real verification, a real database."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict
from sqlalchemy.ext.asyncio import AsyncEngine

from approver.admin import AdminService
from approver.domain.agent_keys import key_digest
from approver.domain.decision import DecisionPolicy, Outcome
from approver.domain.records import AgentRecord, AgentStatus, ApprovalMethod, OwnerEvidence
from approver.domain.requests import RegistrationRequest
from approver.registration import Registrar, Registration
from approver.store import Store, StoreUnavailable, Transaction
from approver.store.batcher import WriteBatcher
from bootstrap_token import (
    KeySet,
    SigningKey,
    TrustPolicy,
    VerificationPolicy,
    fingerprint,
)
from tests.approver.helpers import (
    AGENT_ID,
    AGENT_ID_PREFIX,
    AUDIENCE,
    CLUSTER,
    ISSUER,
    NAMESPACE,
    NOW,
    OWNER_UID,
    POD_NAME,
    SECOND_AGENT_ID,
    SERVICE_ACCOUNT,
    TRUST,
    Clock,
    RecordingSink,
    header_with,
    mint_token,
    registration_body,
    resign,
    tamper,
)


@dataclass
class Harness:
    registrar: Registrar
    admin: AdminService
    audit: RecordingSink
    clock: Clock
    store: Store

    async def register(
        self, agent_id: str = AGENT_ID, *, token: str | None = None, header: str = "X-Agent-API-Key"
    ) -> Registration:
        headers = CIMultiDict({header: token} if token else {})
        request = RegistrationRequest.model_validate(registration_body(agent_id))
        return await self.registrar.register(request=request, headers=headers)


def _harness(
    store: Store,
    key_set: KeySet,
    *,
    trust: TrustPolicy = TRUST,
    auto_approve: bool = True,
    parallel: int = 1,
) -> Harness:
    audit, clock = RecordingSink(), Clock()
    registrar = Registrar(
        store=store,
        key_set=key_set,
        verification=VerificationPolicy(
            issuer=ISSUER, audience=AUDIENCE, leeway_seconds=30, trust=trust
        ),
        policy=DecisionPolicy(auto_approve=auto_approve, agent_id_prefix=AGENT_ID_PREFIX),
        audit=audit,
        clock=clock,
        writer=WriteBatcher(store, max_batch=1, max_parallel=parallel),
    )
    admin = AdminService(store=store, audit=audit, clock=clock)
    return Harness(registrar=registrar, admin=admin, audit=audit, clock=clock, store=store)


@pytest.fixture
def harness(store: Store, key_set: KeySet) -> Harness:
    return _harness(store, key_set)


@pytest.fixture
def token(signing_key: SigningKey) -> str:
    return mint_token(signing_key)


@pytest.fixture(autouse=True)
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


class TestAutoApproval:
    async def test_unmodified_streamspace_agent_is_approved(
        self, harness: Harness, token: str, signing_key: SigningKey
    ) -> None:
        """A StreamSpace agent sending its pod's token as X-Agent-API-Key is approved and bound."""
        result = await harness.register(token=token)
        assert (result.decision.outcome, result.decision.reason) == (
            Outcome.APPROVED,
            "bootstrap_token_accepted",
        )
        agent = result.agent
        assert agent is not None
        assert agent == await harness.store.get_agent(AGENT_ID)
        assert agent.status is AgentStatus.ACTIVE
        assert agent.approval_method is ApprovalMethod.NAMESPACE
        assert (agent.approved_by, agent.kid, agent.cluster) == (
            "bootstrap-token",
            signing_key.kid,
            CLUSTER,
        )
        assert (agent.namespace, agent.pod_name, agent.pod_uid) == (NAMESPACE, POD_NAME, None)
        assert agent.capacity == {"maxCpu": 100, "maxMemory": 128, "maxSessions": 100}
        assert agent.jti is not None
        assert await harness.store.jti_owner(agent.jti) == AGENT_ID

    async def test_audit_event_names_the_token_but_never_holds_it(
        self,
        harness: Harness,
        token: str,
        signing_key: SigningKey,
        all_logs: pytest.LogCaptureFixture,
    ) -> None:
        """The approval's audit event carries jti, kid and fingerprint; no log line the token."""
        result = await harness.register(token=token)
        (event,) = harness.audit.events
        assert (event.component, event.event, event.decision, event.reason) == (
            "approver",
            "agent.register",
            "approved",
            "bootstrap_token_accepted",
        )
        assert result.agent is not None
        assert (event.jti, event.kid, event.credential) == (
            result.agent.jti,
            signing_key.kid,
            fingerprint(token),
        )
        assert (event.namespace, event.service_account, event.pod, event.agent_id) == (
            NAMESPACE,
            SERVICE_ACCOUNT,
            POD_NAME,
            AGENT_ID,
        )
        assert event.security is False
        assert token not in event.to_json()
        assert token.split(".")[2] not in all_logs.text
        assert '"reason":"bootstrap_token_accepted"' in all_logs.text

    async def test_bound_token_again_replaces_the_key(self, harness: Harness, token: str) -> None:
        """The bound token presented again (the first answer was lost, or the container
        restarted) gets the same record with a new key; the first key stops proving it."""
        first = await harness.register(token=token)
        harness.clock.now += 30
        again = await harness.register(token=token)
        assert again.decision.outcome is Outcome.APPROVED
        assert first.api_key is not None
        assert again.api_key is not None
        assert again.api_key != first.api_key
        assert again.agent is not None
        assert first.agent is not None
        assert again.agent.id == first.agent.id
        assert again.agent.api_key_hash == key_digest(again.api_key)
        assert harness.audit.events[-1].message == (
            "step=known_agent effect=issue_key; api key issued"
        )
        old = await harness.register(token=first.api_key)
        assert (old.decision.outcome, old.decision.reason) == (
            Outcome.REJECTED,
            "credential_mismatch",
        )

    async def test_current_key_is_idempotent(self, harness: Harness, token: str) -> None:
        """A registration with the agent's current key (a reconnect) is approved again with
        no new key and writes nothing."""
        first = await harness.register(token=token)
        assert first.api_key is not None
        again = await harness.register(token=first.api_key)
        assert (again.decision.outcome, again.api_key) == (Outcome.APPROVED, None)
        assert again.agent == first.agent == await harness.store.get_agent(AGENT_ID)
        assert harness.audit.events[-1].message == "step=known_agent effect=none"

    async def test_copied_token_on_a_second_agent(self, harness: Harness, token: str) -> None:
        """The same token on a second agent is refused as reused, with a security event."""
        await harness.register(token=token)
        copied = await harness.register(SECOND_AGENT_ID, token=token)
        assert (copied.decision.outcome, copied.decision.reason) == (
            Outcome.REJECTED,
            "token_reused",
        )
        assert copied.decision.http_status == 403
        assert copied.agent is None
        assert await harness.store.get_agent(SECOND_AGENT_ID) is None
        event = harness.audit.events[-1]
        assert (event.security, event.agent_id, event.reason) == (
            True,
            SECOND_AGENT_ID,
            "token_reused",
        )

    async def test_two_agents_present_one_token_at_once(self, harness: Harness, token: str) -> None:
        """Two agents racing with the same jti: the database lets exactly one win."""
        results = await asyncio.gather(
            harness.register(AGENT_ID, token=token),
            harness.register(SECOND_AGENT_ID, token=token),
        )
        outcomes = sorted((r.decision.outcome.value, r.decision.reason) for r in results)
        assert outcomes == [("approved", "bootstrap_token_accepted"), ("rejected", "token_reused")]
        winner = next(r for r in results if r.decision.outcome is Outcome.APPROVED)
        assert winner.agent is not None
        assert winner.agent.jti is not None
        assert await harness.store.jti_owner(winner.agent.jti) == winner.agent.agent_id
        assert [a.agent_id for a in await harness.store.list_agents()] == [winner.agent.agent_id]

    async def test_one_agent_retrying_at_once(self, harness: Harness, token: str) -> None:
        """Two overlapping attempts of the same agent are both approved, with one record."""
        results = await asyncio.gather(harness.register(token=token), harness.register(token=token))
        assert [r.decision.outcome for r in results] == [Outcome.APPROVED, Outcome.APPROVED]
        assert results[0].agent is not None
        assert results[1].agent is not None
        assert results[0].agent.id == results[1].agent.id
        assert len(await harness.store.list_agents()) == 1

    async def test_explicit_header(self, harness: Harness, token: str) -> None:
        """The X-Agent-Bootstrap-Token header approves the same way."""
        result = await harness.register(token=token, header="X-Agent-Bootstrap-Token")
        assert result.decision.outcome is Outcome.APPROVED


class RacingStore(Store):
    """A store whose first two transactions, once each has read its agent's record and the
    jti's owner, wait for each other: both decide on an unused jti, so both try to burn it."""

    def __init__(self, engine: AsyncEngine, **options: Any) -> None:
        super().__init__(engine, **options)
        self.barrier = asyncio.Barrier(2)
        self.waits = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with super().transaction() as tx:
            read = tx.get_agent_and_jti_owner

            async def get_agent_and_jti_owner(
                agent_id: str, jti: str, *, lock: bool = False
            ) -> tuple[AgentRecord | None, str | None]:
                found = await read(agent_id, jti, lock=lock)
                if self.waits < 2:
                    self.waits += 1
                    await asyncio.wait_for(self.barrier.wait(), timeout=5)
                return found

            tx.get_agent_and_jti_owner = get_agent_and_jti_owner  # type: ignore[method-assign]
            yield tx


@pytest.mark.postgres
class TestRaceOnPostgres:
    async def test_both_read_unused_then_race_to_burn(
        self, pg_url: str, key_set: KeySet, token: str
    ) -> None:
        """Two agents that both saw the jti unused race to burn it; PostgreSQL refuses the loser,
        who decides again and is told token_reused."""
        store = RacingStore.open(pg_url)
        assert isinstance(store, RacingStore)
        await store.migrate()
        try:
            # Two transactions at once, as writeConcurrency 2 on PostgreSQL allows.
            harness = _harness(store, key_set, parallel=2)
            results = await asyncio.gather(
                harness.register(AGENT_ID, token=token),
                harness.register(SECOND_AGENT_ID, token=token),
            )
        finally:
            await store.close()
        assert store.waits == 2
        assert sorted(r.decision.reason for r in results) == [
            "bootstrap_token_accepted",
            "token_reused",
        ]
        assert sorted(r.decision.http_status for r in results) == [200, 403]


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _claims_of(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return claims


class TestStrictTokens:
    """Issue 13, items 1 and 2: a well-signed token whose claims have another JSON type, or a
    token spelt otherwise than canonical base64url, is malformed; nothing is written."""

    @pytest.mark.parametrize(
        "changes",
        [
            {"exp": str(NOW + 3600)},
            {"exp": True},
            {"iat": float(NOW), "nbf": float(NOW)},
            {"nbf": None},
            {"namespace": [NAMESPACE]},
            {"jti": 1234567890123456789012},
            {"pod": "streamspace-k8s-agent-"},
        ],
        ids=[
            "numeric-string-exp",
            "boolean-exp",
            "float-times",
            "null-nbf",
            "array-namespace",
            "integer-jti",
            "string-pod",
        ],
    )
    async def test_claim_of_another_type(
        self, harness: Harness, token: str, signing_key: SigningKey, changes: dict[str, object]
    ) -> None:
        """403 malformed before any policy check; no record, the jti not burnt, audited as a
        security event."""
        jti = str(_claims_of(token)["jti"])
        result = await harness.register(token=resign(token, signing_key, **changes))
        assert (result.decision.http_status, result.decision.reason) == (403, "malformed")
        assert await harness.store.get_agent(AGENT_ID) is None
        assert await harness.store.jti_owner(jti) is None
        assert harness.audit.events[-1].security is True
        # the same token with its claims as minted is still good
        assert (await harness.register(token=token)).decision.outcome is Outcome.APPROVED

    @pytest.mark.parametrize(
        "respell",
        [
            lambda t: t + "==",
            lambda t: t[:-1] + _B64URL[_B64URL.index(t[-1]) | 1],
            lambda t: t[:40] + " " + t[40:],
        ],
        ids=["padded", "trailing-bits-set", "space-inside"],
    )
    async def test_respelt_token_in_the_api_key_header(
        self, harness: Harness, token: str, respell: object
    ) -> None:
        """Another spelling of a valid token in ``X-Agent-API-Key`` is a malformed token, not
        an unknown API key (which left a pending record behind)."""
        assert callable(respell)
        spelling = respell(token)
        assert spelling != token
        result = await harness.register(token=spelling)
        assert (result.decision.http_status, result.decision.reason) == (403, "malformed")
        assert await harness.store.get_agent(AGENT_ID) is None


class TestNotApproved:
    async def test_tampered_token_leaves_no_record(
        self, harness: Harness, token: str, signing_key: SigningKey
    ) -> None:
        """A tampered token is refused (403 bad_signature), audited as security, not stored."""
        forged = tamper(token)
        result = await harness.register(token=forged)
        assert (result.decision.http_status, result.decision.reason) == (403, "bad_signature")
        assert await harness.store.get_agent(AGENT_ID) is None
        event = harness.audit.events[-1]
        assert (event.security, event.kid, event.jti) == (True, signing_key.kid, None)
        assert event.credential == fingerprint(forged)

    async def test_non_string_kid_is_malformed(self, harness: Harness, token: str) -> None:
        """A header PyJWT itself refuses (kid not a string) is a malformed token, not a crash."""
        result = await harness.register(token=header_with(token, kid=7))
        assert (result.decision.http_status, result.decision.reason) == (403, "malformed")

    async def test_expired_token_waits_then_admin_approves(
        self, harness: Harness, token: str
    ) -> None:
        """An expired token leaves the agent pending; once an admin approves, the retry gets 200."""
        harness.clock.now = NOW + 3600 + 30
        pending = await harness.register(token=token)
        assert (pending.decision.http_status, pending.decision.reason) == (202, "expired")
        assert pending.agent is not None
        assert pending.agent.status is AgentStatus.PENDING
        approved = await harness.admin.approve(agent_id=AGENT_ID, actor="alice")
        assert approved is not None
        assert (approved.status, approved.approval_method, approved.approved_by) == (
            AgentStatus.ACTIVE,
            ApprovalMethod.MANUAL,
            "alice",
        )
        retry = await harness.register(token=token)
        assert (retry.decision.http_status, retry.decision.reason) == (200, "approved_by_admin")
        assert retry.agent is not None
        assert (retry.agent.status, retry.agent.approved_by, retry.agent.approved_at) == (
            approved.status,
            approved.approved_by,
            approved.approved_at,
        )
        assert retry.api_key is not None  # the retry proving the token gets the key, once
        assert retry.agent.api_key_hash == key_digest(retry.api_key)
        again = await harness.register(token=token)
        assert (again.decision.http_status, again.api_key) == (200, None)

    async def test_admin_reject_is_what_the_retry_hears(self, harness: Harness, token: str) -> None:
        """After an admin rejects an approved agent, its retry gets 403 rejected_by_admin."""
        await harness.register(token=token)
        rejected = await harness.admin.reject(agent_id=AGENT_ID, actor="alice")
        assert rejected is not None
        assert rejected.status is AgentStatus.REJECTED
        retry = await harness.register(token=token)
        assert (retry.decision.http_status, retry.decision.reason) == (403, "rejected_by_admin")
        assert retry.decision.security is False

    async def test_trust_withdrawn_before_verification(
        self, store: Store, key_set: KeySet, token: str
    ) -> None:
        """A namespace removed from the approver's trust makes its valid tokens wait (202)."""
        harness = _harness(store, key_set, trust=TrustPolicy(namespaces=frozenset({"other"})))
        result = await harness.register(token=token)
        assert (result.decision.http_status, result.decision.reason) == (
            202,
            "namespace_not_trusted",
        )
        assert result.agent is not None
        assert result.agent.jti is None

    async def test_auto_approve_disabled(self, store: Store, key_set: KeySet, token: str) -> None:
        """With auto-approval off, a token approves nothing: the agent waits, its jti unburnt.
        The binding the verified token proves is kept for the administrator (its namespace,
        its pod, its owner from the token's claim, as there is no Kubernetes access here)."""
        harness = _harness(store, key_set, auto_approve=False)
        result = await harness.register(token=token)
        assert (result.decision.http_status, result.decision.reason) == (
            202,
            "auto_approve_disabled",
        )
        assert result.api_key is None
        assert result.agent is not None
        assert (result.agent.namespace, result.agent.pod_name, result.agent.jti) == (
            NAMESPACE,
            POD_NAME,
            None,
        )
        assert (result.agent.owner_uid, result.agent.owner_evidence) == (
            OWNER_UID,
            OwnerEvidence.TOKEN,
        )
        jti = harness.audit.events[-1].jti
        assert jti is not None
        assert await harness.store.jti_owner(jti) is None

    async def test_bare_agent_id_cannot_take_over(self, harness: Harness, token: str) -> None:
        """A request naming an approved agent without its token is refused; the record stays."""
        approved = await harness.register(token=token)
        impostor = await harness.register()
        assert (impostor.decision.http_status, impostor.decision.reason) == (
            403,
            "credential_mismatch",
        )
        assert impostor.decision.security is True
        assert await harness.store.get_agent(AGENT_ID) == approved.agent


class TestRebind:
    async def test_manual_registration_later_proven_by_token(
        self, harness: Harness, token: str
    ) -> None:
        """A pending agent registered without a token is re-bound and approved by its token."""
        manual = await harness.register()
        assert manual.decision.reason == "manual_approval_required"
        harness.clock.now += 60
        proven = await harness.register(token=token)
        assert (proven.decision.http_status, proven.decision.reason) == (
            200,
            "bootstrap_token_accepted",
        )
        assert manual.agent is not None
        assert proven.agent is not None
        assert proven.agent.id == manual.agent.id
        assert proven.agent.created_at == manual.agent.created_at
        assert proven.agent.updated_at > manual.agent.updated_at
        assert proven.agent == await harness.store.get_agent(AGENT_ID)


class TestStoreDown:
    async def test_unreachable_database(self, tmp_path: Path, key_set: KeySet, token: str) -> None:
        """With the database unreachable the registration raises StoreUnavailable and is audited."""
        store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'approver.db'}")
        harness = _harness(store, key_set)
        try:
            with pytest.raises(StoreUnavailable):
                await harness.register(token=token)
        finally:
            await store.close()
        (event,) = harness.audit.events
        assert (event.decision, event.reason, event.agent_id) == (
            "error",
            "store_unavailable",
            AGENT_ID,
        )
