"""The limits on unauthenticated pending registrations through the real application, on SQLite
and PostgreSQL: a flood without a credential is answered 202 pending + Retry-After with nothing
written once a limit is reached, while an agent holding a valid credential is still approved.
Also the count behind the per-namespace cap, and the control-plane path (nothing is asked of the
control plane for a limited registration)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from approver.domain.control_plane import AgentIntent, ControlPlaneAgent, Grant, Upstream
from approver.domain.decision import DecisionPolicy
from approver.domain.pending_limits import (
    NAMESPACE_FULL_RETRY_AFTER_SECONDS,
    PendingLimitPolicy,
    RateLimit,
)
from approver.domain.records import AgentStatus, ControlPlaneState
from approver.domain.requests import RegistrationRequest
from approver.http.app import create_app
from approver.http.app_keys import REGISTRAR_KEY
from approver.http.limits import limited_response
from approver.pending_limits.gate import METRIC, PendingGate
from approver.registration import Registrar
from approver.store import Store
from approver.store.pending_rows import count_unbound_pending
from bootstrap_token import KeySet, SigningKey, VerificationPolicy
from tests.approver.helpers import (
    AGENT_ID_PREFIX,
    AUDIENCE,
    GENERATE_NAME,
    ISSUER,
    NAMESPACE,
    TRUST,
    Clock,
    RecordingSink,
    agent_record,
    mint_token,
    registration_body,
    settings,
)

REGISTER = "/api/v1/agents/register"
#: The test's stand-in for different client addresses (the middleware below).
SOURCE_HEADER = "X-Test-Source"
#: So slow that no token comes back during a test: every figure below is exact.
FROZEN = 0.001

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def source_address(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The request as if it came from ``X-Test-Source`` (the test client is always 127.0.0.1)."""
    source = request.headers.get(SOURCE_HEADER)
    if source is not None:
        request = request.clone(remote=source)
    return await handler(request)


def agent(n: int) -> str:
    return f"{AGENT_ID_PREFIX}-{GENERATE_NAME}n{n:04d}"


class Flood:
    """One approver app on ``store`` with ``pendingLimits`` set to ``limits``."""

    def __init__(self, client: Client, store: Store, audit: RecordingSink) -> None:
        self.client = client
        self.store = store
        self.audit = audit

    async def register(
        self,
        agent_id: str,
        *,
        token: str | None = None,
        source: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any], Mapping[str, str]]:
        headers = {"X-Agent-API-Key": token} if token else {}
        if source is not None:
            headers[SOURCE_HEADER] = source
        response = await self.client.post(
            REGISTER, json=registration_body(agent_id, metadata=metadata), headers=headers
        )
        return response.status, await response.json(), response.headers

    def limited(self, limit: str) -> float:
        gate = self.client.app[REGISTRAR_KEY].pending_gate
        assert gate is not None
        value = gate.registry.get_sample_value(METRIC + "_total", {"limit": limit})
        return value or 0.0

    async def rows(self) -> list[str]:
        return sorted(a.agent_id for a in await self.store.list_agents())

    async def stored_events(self) -> int:
        seq, _ = await self.store.audit_head()
        return seq

    def lines(self, reason: str) -> int:
        return sum(e.reason == reason for e in self.audit.events)


FloodFactory = Callable[..., Awaitable[Flood]]


@pytest.fixture
def flood(
    aiohttp_client: ClientFactory, jwks_file: Path, key_set: KeySet, store: Store
) -> FloodFactory:
    async def make(**limits: Any) -> Flood:
        audit = RecordingSink()
        app = create_app(
            settings(jwks_file=jwks_file, pending_limits=limits),
            key_set=key_set,
            store=store,
            clock=Clock(),
            audit=audit,
            background=False,
        )
        app.middlewares.insert(0, source_address)
        return Flood(await aiohttp_client(app), store, audit)

    return make


def assert_limited(
    status: int, body: dict[str, Any], headers: Mapping[str, str], reason: str
) -> int:
    """A limited answer: the 202 pending StreamSpace's agent waits on, Retry-After, no record."""
    assert status == 202
    assert body == {
        "approvalStatus": "pending",
        "message": body["message"],
        "reason": reason,
    }
    assert body["message"].endswith("; retry")
    assert headers["Cache-Control"] == "no-store"
    retry_after = int(headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


class TestFloodFromOneSource:
    async def test_after_the_burst_nothing_more_is_written(self, flood: FloodFactory) -> None:
        """Three new pending agents from one address, then 202 + Retry-After and no more rows,
        no more stored events; each refusal a metric increment, and one audit line per limit
        and source per window (approver.audit.sampling), not one per refusal."""
        app = await flood(perSourcePerSecond=FROZEN, perSourceBurst=3)
        answers = [await app.register(agent(n)) for n in range(8)]
        for status, body, _ in answers[:3]:
            assert (status, body["reason"], body["status"]) == (
                202,
                "manual_approval_required",
                "pending",
            )
            assert uuid.UUID(body["id"])
        for status, body, headers in answers[3:]:
            retry_after = assert_limited(status, body, headers, "pending_rate_limited")
            assert retry_after == 1000  # one token at 0.001/s
        assert await app.rows() == [agent(n) for n in range(3)]
        assert await app.stored_events() == 3
        assert app.lines("pending_rate_limited") == 1  # the other 4 within the window
        line = next(e for e in app.audit.events if e.reason == "pending_rate_limited")
        assert (line.decision, line.agent_id) == ("pending", agent(3))
        assert line.message is not None
        assert "limit=source" in line.message
        assert app.limited("source") == 5

    async def test_valid_token_is_approved_during_the_flood(
        self, flood: FloodFactory, signing_key: SigningKey
    ) -> None:
        """An agent holding its pod's token, from the flooding address, is approved (200)."""
        app = await flood(perSourcePerSecond=FROZEN, perSourceBurst=2, overallBurst=2)
        for n in range(6):
            await app.register(agent(n))
        assert len(await app.rows()) == 2
        status, body, _ = await app.register(agent(100), token=mint_token(signing_key))
        assert (status, body["approvalStatus"], body["reason"]) == (
            200,
            "approved",
            "bootstrap_token_accepted",
        )
        assert body["apiKey"]
        assert agent(100) in await app.rows()

    async def test_pending_agent_retrying_is_not_limited(self, flood: FloodFactory) -> None:
        """An agent already pending keeps getting its record's answer: a retry creates
        nothing, so no limit applies to it."""
        app = await flood(perSourcePerSecond=FROZEN, perSourceBurst=1)
        first = await app.register(agent(0))
        assert first[0] == 202
        assert first[1]["reason"] == "manual_approval_required"
        assert_limited(*(await app.register(agent(1))), "pending_rate_limited")
        for _ in range(3):
            status, body, headers = await app.register(agent(0))
            assert (status, body["reason"], body["id"]) == (
                202,
                "manual_approval_required",
                first[1]["id"],
            )
            assert "Retry-After" not in headers

    async def test_other_addresses_have_their_own_bucket(self, flood: FloodFactory) -> None:
        app = await flood(perSourcePerSecond=FROZEN, perSourceBurst=1)
        assert (await app.register(agent(0), source="10.1.0.1"))[1]["reason"] == (
            "manual_approval_required"
        )
        assert_limited(*(await app.register(agent(1), source="10.1.0.1")), "pending_rate_limited")
        status, body, _ = await app.register(agent(2), source="10.1.0.2")
        assert (status, body["reason"]) == (202, "manual_approval_required")

    async def test_disabled(self, flood: FloodFactory) -> None:
        app = await flood(enabled=False, perSourceBurst=1)
        assert app.client.app[REGISTRAR_KEY].pending_gate is None
        for n in range(4):
            assert (await app.register(agent(n)))[1]["reason"] == "manual_approval_required"
        assert len(await app.rows()) == 4


class TestOverall:
    async def test_holds_across_sources(self, flood: FloodFactory, signing_key: SigningKey) -> None:
        """Four new pending agents overall from four addresses, then every address waits
        (its own bucket full), while a valid token is still approved."""
        app = await flood(overallPerSecond=FROZEN, overallBurst=4)
        answers = [await app.register(agent(n), source=f"10.2.0.{n}") for n in range(7)]
        assert [a[1]["reason"] for a in answers[:4]] == ["manual_approval_required"] * 4
        for answer in answers[4:]:
            assert_limited(*answer, "pending_rate_limited")
        assert len(await app.rows()) == 4
        assert app.limited("overall") == 3
        assert app.limited("source") == 0
        token = mint_token(signing_key)
        status, _, _ = await app.register(agent(50), token=token, source="10.2.0.50")
        assert status == 200


class TestPerNamespace:
    async def test_cap_per_claimed_namespace(
        self, flood: FloodFactory, signing_key: SigningKey
    ) -> None:
        """Two pending agents claiming the trusted namespace, two claiming any other (one
        shared bucket, whatever they invent); beyond that 202 + Retry-After 60, nothing written;
        a valid token in the full namespace is still approved; a deleted record makes room."""
        app = await flood(maxPerNamespace=2, perSourceBurst=100, overallBurst=100)
        ours = {"namespace": NAMESPACE}
        for n in range(2):
            status, body, _ = await app.register(agent(n), metadata=ours)
            assert (status, body["reason"]) == (202, "manual_approval_required")
        full = await app.register(agent(2), metadata=ours)
        assert assert_limited(*full, "pending_namespace_full") == (
            NAMESPACE_FULL_RETRY_AFTER_SECONDS
        )
        also_full = await app.register(agent(3), metadata={"podNamespace": NAMESPACE})
        assert_limited(*also_full, "pending_namespace_full")
        for n, claim in enumerate(["invented-1", "invented-2"], start=10):
            status, body, _ = await app.register(agent(n), metadata={"namespace": claim})
            assert (status, body["reason"]) == (202, "manual_approval_required")
        for metadata in ({"namespace": "invented-3"}, {}):
            assert_limited(
                *(await app.register(agent(12), metadata=metadata)), "pending_namespace_full"
            )
        assert await app.rows() == [agent(0), agent(1), agent(10), agent(11)]
        assert app.limited("namespace") == 4

        status, _, _ = await app.register(agent(20), token=mint_token(signing_key), metadata=ours)
        assert status == 200

        record = await app.store.get_agent(agent(0))
        assert record is not None
        async with app.store.transaction() as tx:
            await tx.delete_agent(record)
        status, body, _ = await app.register(agent(2), metadata=ours)
        assert (status, body["reason"]) == (202, "manual_approval_required")


class TestCount:
    async def test_attribution_in_sql_matches_the_rule(self, store: Store) -> None:
        """The stored claim is read as the domain reads it, on both dialects: podNamespace
        unless absent or null, else namespace; a known one is its own bucket, the rest share
        one; only pending records no credential bound to a namespace count."""
        known = frozenset({NAMESPACE, "agents-b"})
        rows: list[tuple[dict[str, Any], AgentStatus, str | None]] = [
            ({"namespace": NAMESPACE}, AgentStatus.PENDING, None),
            ({"podNamespace": NAMESPACE, "namespace": "x"}, AgentStatus.PENDING, None),
            ({"podNamespace": None, "namespace": NAMESPACE}, AgentStatus.PENDING, None),
            ({"podNamespace": "agents-b"}, AgentStatus.PENDING, None),
            ({"podNamespace": 7, "namespace": NAMESPACE}, AgentStatus.PENDING, None),
            ({"podNamespace": True}, AgentStatus.PENDING, None),
            ({"namespace": "invented"}, AgentStatus.PENDING, None),
            ({"namespace": {"nested": NAMESPACE}}, AgentStatus.PENDING, None),
            ({}, AgentStatus.PENDING, None),
            ({"namespace": NAMESPACE}, AgentStatus.PENDING, NAMESPACE),  # bound: not counted
            ({"namespace": NAMESPACE}, AgentStatus.REJECTED, None),  # not pending
        ]
        async with store.transaction() as tx:
            for n, (metadata, status, namespace) in enumerate(rows):
                record = agent_record(status, metadata=metadata, namespace=namespace)
                await tx.insert_agent(replace(record, agent_id=agent(n), credential_hash=None))
        async with store.transaction() as tx:
            counts = {
                bucket: await count_unbound_pending(tx, bucket=bucket, known=known)
                for bucket in (NAMESPACE, "agents-b", None)
            }
            nothing_known = await count_unbound_pending(tx, bucket=None, known=frozenset())
        assert counts == {NAMESPACE: 3, "agents-b": 1, None: 5}
        assert nothing_known == 9


class AdmitRecorder:
    """A control plane that records what it is asked to admit."""

    name = "fake"
    upstream = Upstream(base_url="http://127.0.0.1:9", paths=())
    budget_seconds = 5.0

    def __init__(self) -> None:
        self.admitted: list[str] = []

    def refusal(self, body: Mapping[str, object]) -> str | None:
        return None

    async def admit(
        self, agent: AgentIntent, *, deadline: float | None = None
    ) -> ControlPlaneState:
        self.admitted.append(agent.agent_id)
        return ControlPlaneState.PENDING

    async def grant(
        self, agent: AgentIntent, *, known: ControlPlaneState | None, deadline: float | None = None
    ) -> Grant:
        raise AssertionError("not expected")

    async def approve(self, agent: AgentIntent) -> ControlPlaneState:
        raise AssertionError("not expected")

    async def reject(self, agent_id: str) -> ControlPlaneState:
        raise AssertionError("not expected")

    async def remove(self, agent_id: str) -> None:
        raise AssertionError("not expected")

    async def snapshot(self) -> Mapping[str, ControlPlaneAgent]:
        return {}

    async def close(self) -> None:
        return None


async def test_limited_registration_asks_the_control_plane_nothing(
    sqlite_store: Store, key_set: KeySet
) -> None:
    """With a control plane, the limit is judged in the preview: a limited agent is not made
    visible there, and nothing is written here."""
    control_plane = AdmitRecorder()
    gate = PendingGate(
        PendingLimitPolicy(per_source=RateLimit(FROZEN, 1), overall=RateLimit(100, 100)),
        known_namespaces=TRUST.namespaces,
    )
    registrar = Registrar(
        store=sqlite_store,
        key_set=key_set,
        verification=VerificationPolicy(issuer=ISSUER, audience=AUDIENCE, trust=TRUST),
        policy=DecisionPolicy(auto_approve=True, agent_id_prefix=AGENT_ID_PREFIX),
        audit=RecordingSink(),
        clock=Clock(),
        control_plane=control_plane,
        pending_gate=gate,
    )
    results = [
        await registrar.register(
            request=RegistrationRequest.model_validate(registration_body(agent(n))),
            headers=CIMultiDict(),
            client_ip="10.3.0.1",
        )
        for n in range(3)
    ]
    assert [r.limited is None for r in results] == [True, False, False]
    assert [r.decision.reason for r in results[1:]] == ["pending_rate_limited"] * 2
    assert control_plane.admitted == [agent(0)]
    assert [a.agent_id for a in await sqlite_store.list_agents()] == [agent(0)]
    assert gate.registry.get_sample_value(METRIC + "_total", {"limit": "source"}) == 2


def test_elsewhere_the_answer_is_429() -> None:
    """Off the agent registration path a limit answers 429 with Retry-After (RFC 6585)."""
    limited = PendingLimitPolicy(per_source=RateLimit(1, 1), overall=RateLimit(1, 1))
    gate = PendingGate(limited, known_namespaces=frozenset())
    gate.limiter.take("a")
    refusal = gate.limiter.take("a")
    assert refusal is not None
    response = limited_response(refusal, agent_path=False)
    assert response.status == 429
    assert response.headers["Retry-After"] == "1"
    assert response.content_type == "application/json"
    agent_answer = limited_response(refusal, agent_path=True)
    assert agent_answer.status == 202


class TestRegistrationsThatChangeNothing:
    """The outside attack's finding: past the creation limits, anyone could still add one
    stored audit row per request by registering an existing agent id again (a pending agent's
    retry without a credential, or a junk key against an active agent: 403). Events that change
    nothing are stored sampled: at most one per reason and source per 10 s, and the next says
    how many were left out; every event that changes a record is still stored."""

    async def test_a_flood_on_existing_ids_stores_a_bounded_number_of_rows(
        self, flood: FloodFactory, signing_key: SigningKey
    ) -> None:
        app = await flood()
        assert (await app.register(agent(1)))[0] == 202  # pending, stored
        status, _, _ = await app.register(agent(2), token=mint_token(signing_key))
        assert status == 200  # approved, stored
        before = await app.stored_events()
        assert before == 2
        for _ in range(50):
            assert (await app.register(agent(1)))[0] == 202  # a retry: nothing changes
            assert (await app.register(agent(2), token="abk_junk_junk"))[0] == 403
        stored = await app.stored_events()
        # One row per (reason, source) in the window, not 100.
        assert stored - before == 2, stored
        assert await app.rows() == [agent(1), agent(2)]

    async def test_a_change_is_always_stored(
        self, flood: FloodFactory, signing_key: SigningKey
    ) -> None:
        app = await flood()
        for n in range(5):
            status, _, _ = await app.register(agent(10 + n), token=mint_token(signing_key))
            assert status == 200
        assert await app.stored_events() == 5  # five approvals from one source: all stored

    async def test_a_flood_from_many_sources_does_not_hide_a_copied_token(
        self, flood: FloodFactory, signing_key: SigningKey
    ) -> None:
        """Second outside attack: junk from 120 addresses used up the 100 stored events per
        window, and a thief's ``token_reused`` that came next was neither stored nor logged.
        Security-relevant events are sampled per reason and source only, with a stored budget
        per reason: a flood of other refusals, security-relevant ones included, leaves room."""
        app = await flood()
        token = mint_token(signing_key)
        assert (await app.register(agent(1)))[0] == 202
        assert (await app.register(agent(2), token=token))[0] == 200
        before = await app.stored_events()
        for n in range(120):
            source = f"10.1.{n // 250}.{n % 250}"
            assert (await app.register(agent(1), source=source))[0] == 202  # a retry
            assert (await app.register(agent(2), token="abk_junk_junk", source=source))[0] == 403
        assert app.lines("credential_mismatch") == 120
        status, body, _ = await app.register(agent(3), token=token, source="10.9.9.9")
        assert (status, body["reason"]) == (403, "token_reused")
        assert app.lines("token_reused") == 1
        seq, _ = await app.store.audit_head()
        stored = [c.event.reason for c in await app.store.list_audit(after=before, limit=1000)]
        assert stored.count("token_reused") == 1
        # The others: 100 retries in all (the overall bound), 100 junk keys (their reason's).
        assert stored.count("manual_approval_required") == 100
        assert stored.count("credential_mismatch") == 100
        assert seq - before == 201
