"""The registration path ends an active agent's certificates as the other use cases do: when
the agent is re-bound to another pod's token (a StatefulSet pod recreated under its name), its
old key goes and so do its certificates (``agent_rebound``). On a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from multidict import CIMultiDict

from approver.agent_certs import repository
from approver.agent_certs.records import CertificateRow, IssuedWith, RevokedReason
from approver.domain.decision import DecisionPolicy, Effect
from approver.domain.records import AgentStatus
from approver.domain.requests import RegistrationRequest
from approver.registration import Registrar, Registration
from approver.store import Store
from bootstrap_token import KeySet, PodRef, SigningKey
from tests.approver.helpers import (
    AGENT_ID,
    AGENT_ID_PREFIX,
    POD_NAME,
    VERIFICATION,
    Clock,
    RecordingSink,
    mint_token,
    registration_body,
)


async def test_rebinding_an_active_agent_revokes_its_certificates(
    store: Store, signing_key: SigningKey
) -> None:
    clock = Clock()
    registrar = Registrar(
        store=store,
        key_set=KeySet([signing_key.public_key]),
        verification=VERIFICATION,
        policy=DecisionPolicy(auto_approve=True, agent_id_prefix=AGENT_ID_PREFIX),
        audit=RecordingSink(),
        clock=clock,
    )

    async def register(token: str) -> Registration:
        return await registrar.register(
            request=RegistrationRequest.model_validate(registration_body(AGENT_ID)),
            headers=CIMultiDict({"X-Agent-API-Key": token}),
        )

    first = await register(mint_token(signing_key, pod=PodRef(name=POD_NAME)))
    assert first.agent is not None
    assert first.agent.status is AgentStatus.ACTIVE
    now = datetime.fromtimestamp(clock(), UTC)
    async with store.transaction() as tx:  # a certificate of the agent of the old pod
        await repository.insert(
            tx.connection,
            CertificateRow(
                serial="5e1a1",
                agent_id=AGENT_ID,
                sha256="0" * 64,
                issued_at=now,
                not_before=now,
                not_after=now + timedelta(hours=24),
                issued_with=IssuedWith.API_KEY,
                issuer_sha256="1" * 64,
            ),
        )
    clock.now += 1
    second = await register(mint_token(signing_key, pod=PodRef(name=POD_NAME)))
    assert second.decision.effect is Effect.REBIND
    async with store.reading() as conn:
        rows = await repository.for_agent(conn, AGENT_ID)
    assert [(r.serial, r.revoked_reason) for r in rows] == [("5e1a1", RevokedReason.AGENT_REBOUND)]
