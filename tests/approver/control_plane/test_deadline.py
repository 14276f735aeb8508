"""One deadline per registration: time spent reading the live pod counts against the control
plane's budget, so the answer stays within StreamSpace's agent's 10 s timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from multidict import CIMultiDict

from approver.domain.binding import LivePod
from approver.domain.control_plane import AgentIntent, ControlPlaneAgent, Grant, Upstream
from approver.domain.decision import DecisionPolicy
from approver.domain.records import ControlPlaneState
from approver.domain.requests import RegistrationRequest
from approver.registration import Registrar
from approver.store import Store
from bootstrap_token import KeySet, OwnerRef, SigningKey, VerificationPolicy
from tests.approver.helpers import (
    AGENT_ID,
    AGENT_ID_PREFIX,
    ANNOTATION,
    AUDIENCE,
    ISSUER,
    NAMESPACE,
    OWNER,
    POD_NAME,
    TRUST,
    Clock,
    RecordingSink,
    mint_token,
    registration_body,
)

BUDGET = 1.0
POD_READ = 0.6


class SlowPods:
    """A pod source that takes :data:`POD_READ` seconds to answer with the stamped pod."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def read(self, namespace: str, name: str) -> LivePod | None:
        await asyncio.sleep(POD_READ)
        return LivePod(
            namespace=NAMESPACE,
            name=POD_NAME,
            uid="pod-uid-1",
            annotations={ANNOTATION: self.token},
            controller=OwnerRef(**OWNER),
        )


class DeadlineRecorder:
    """A control plane that records the deadline it is given, and grants."""

    name = "fake"
    upstream = Upstream(base_url="http://127.0.0.1:9", paths=())
    budget_seconds = BUDGET

    def __init__(self) -> None:
        self.left: list[float] = []

    def refusal(self, body: Mapping[str, object]) -> str | None:
        return None

    async def admit(
        self, agent: AgentIntent, *, deadline: float | None = None
    ) -> ControlPlaneState:
        raise AssertionError("not expected")

    async def grant(
        self, agent: AgentIntent, *, known: ControlPlaneState | None, deadline: float | None = None
    ) -> Grant:
        assert deadline is not None
        self.left.append(deadline - time.monotonic())
        return Grant(credential="k" * 64)

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


async def test_pod_read_counts_against_the_budget(
    sqlite_store: Store, key_set: KeySet, signing_key: SigningKey
) -> None:
    """A pod read of 0.6 s leaves the control plane 0.4 s of a 1 s budget, not 1 s."""
    token = mint_token(signing_key)
    control_plane = DeadlineRecorder()
    registrar = Registrar(
        store=sqlite_store,
        key_set=key_set,
        verification=VerificationPolicy(issuer=ISSUER, audience=AUDIENCE, trust=TRUST),
        policy=DecisionPolicy(auto_approve=True, agent_id_prefix=AGENT_ID_PREFIX, kubernetes=True),
        audit=RecordingSink(),
        clock=Clock(),
        pods=SlowPods(token),
        token_annotation=ANNOTATION,
        control_plane=control_plane,
    )
    result = await registrar.register(
        request=RegistrationRequest.model_validate(registration_body(AGENT_ID)),
        headers=CIMultiDict({"X-Agent-API-Key": token}),
    )
    assert result.decision.http_status == 200
    [left] = control_plane.left
    assert 0 < left <= BUDGET - POD_READ + 0.05
