"""Registration: verify, look at the pod, decide in one transaction, write, audit. No HTTP.

:class:`Registrar` runs one registration:

1. read the presented credentials (:mod:`approver.domain.credentials`);
2. before touching the database: verify the bootstrap token (CPU only, the current key set and
   trust policy), read the live pod when Kubernetes access is on and the token names the
   agent's pod (:mod:`approver.domain.binding`), and ask the step-3/4 verifiers
   (:mod:`approver.verifiers`), with auto-approval off too (what they prove is recorded on the
   pending record, :mod:`approver.domain.decision`, "Auto-approval off"); for a proven owner
   that is a ReplicaSet, find its Deployment (:meth:`Registrar._deployments`);
3. in one transaction attempt (shared with concurrent registrations,
   :mod:`approver.store.batcher`): read everything the decision needs up front (the agent's
   record, locked; who burnt the token's ``jti``), decide once
   (:func:`approver.domain.decision.decide`; a copy is named ``token_reused`` before anything
   else), fold in the quota when it applies (counted and locked); let the deciding verifier
   claim its slot; burn the ``jti`` (``INSERT ... ON CONFLICT DO NOTHING``: losing that race to
   a concurrent transaction is a conflict, and the attempt runs again, reading the winner); make
   the per-agent API key when the decision issues one (only its hash is written); write the
   record; append the audit event to the hash chain; commit. A decision that would create a
   pending record without a valid credential asks the limits first
   (:mod:`approver.pending_limits.gate`): refused, it writes nothing and is answered 202
   pending with ``Retry-After``;
4. emit the audit event as a JSON line, after the commit, so it never reports what was not
   stored; return the answer (200 means committed).

A registration id inserted concurrently (the same new agent twice at once) makes the transaction
roll back and run again: the second run sees the winner's row.

**With a control plane** (:mod:`approver.connectors`), an approval counts only where the agent
works, so the control plane is asked *before* anything is written:

1. the body is checked against the control plane's own validation (a body it refuses is a 400,
   as the control plane itself would answer, and leaves no record);
2. a read-only preview of the transaction's decision says which call it needs
   (:func:`approver.domain.sync_plan.registration_step`): make the agent visible as pending
   (``admit``), or approve it there and get the key the agent will hold (``grant``: approve,
   or rotate-key when it is approved there already);
3. the transaction decides again and writes; the key handed to the agent is the control
   plane's (its SHA-256 stored), and the record notes the control plane's state.

An unreachable control plane raises :class:`ControlPlaneUnavailable` before any write (the agent
is answered 202 pending with Retry-After and tries again); its administrator's rejection is
recorded (403). When the transaction's decision differs from the preview (a ``jti`` race lost,
a quota filled meanwhile), a key it does not hand out is withdrawn there; a decision that now
hands out a key nobody asked for is planned again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import jwt

from approver.audit.sampling import LineSampler, WindowBudget
from approver.domain.agent_keys import key_digest, new_agent_key
from approver.domain.binding import (
    PodCheck,
    PodEvidence,
    PodLookupError,
    PodSource,
    bound_pod_name,
    check_live_pod,
    pod_namespace_mismatch,
)
from approver.domain.control_plane import (
    AgentIntent,
    ControlPlane,
    ControlPlaneError,
    ControlPlaneRefused,
    ControlPlaneRejected,
    ControlPlaneUnavailable,
    Grant,
)
from approver.domain.credential_outcome import CredentialOutcome
from approver.domain.credentials import BootstrapCredential, Presented, presented_credentials
from approver.domain.decision import (
    AUTOMATIC_ACTORS,
    REGISTRATION_ACTOR,
    Decision,
    DecisionPolicy,
    Effect,
    Facts,
    Outcome,
    Step,
    StoreView,
    Verification,
    apply_quota,
    decide,
    demote,
    needs_quota,
)
from approver.domain.lifecycle import LifecycleEvent, allowed, apply, first_approval_fields
from approver.domain.pending_limits import PendingLimited, limited_decision
from approver.domain.ports import CredentialVerifier
from approver.domain.quota import QuotaUsage, lock_key
from approver.domain.records import AgentRecord, ControlPlaneState, TokenUse
from approver.domain.requests import RegistrationRequest
from approver.domain.sync_plan import (
    CONTROL_PLANE_UNAVAILABLE,
    REMOVED_IN_CONTROL_PLANE,
    registration_step,
)
from approver.domain.sync_plan import Step as CpStep
from approver.domain.workloads import (
    DEPLOYMENT,
    REPLICA_SET,
    DeploymentSource,
    OwnerLookupError,
)
from approver.pending_limits.gate import Admission, PendingGate
from approver.store import Store, StoreConflict, StoreUnavailable, Transaction
from approver.store.batcher import WriteBatcher
from approver.transitions import end_certificates
from bootstrap_token import (
    AuditEvent,
    AuditSink,
    BootstrapClaims,
    Expired,
    KeySet,
    MalformedToken,
    OwnerRef,
    TokenError,
    VerificationPolicy,
    jsonio,
    verify,
)

log = logging.getLogger(__name__)

#: Stored events of registrations that change nothing, at most, per 10 s window in all.
UNCHANGED_EVENTS_PER_WINDOW = 100
#: Security-relevant events of registrations that change nothing, stored per reason per 10 s
#: (sampled per reason and source, outside the bound above; past it emitted, not stored).
SECURITY_EVENTS_STORED_PER_WINDOW = 100

#: Attempts of the decide-and-write transaction when the database reports a conflict. One
#: conflict is expected at most (the second attempt sees the committed winner).
MAX_ATTEMPTS = 3

REGISTER_EVENT = "agent.register"
#: The annotation the webhook stamps, unless ``kubernetes.tokenAnnotation`` says otherwise.
DEFAULT_TOKEN_ANNOTATION = "agents.streamspace.io/bootstrap-token"  # noqa: S105 - a key name


@dataclass(frozen=True, slots=True)
class Registration:
    """A registration's result.

    Attributes:
        decision: the decision (200/202/403 via ``decision.http_status``).
        agent: the agent record after it (None when the decision kept no record: a 403 for an
            unknown agent, or one that proved nothing).
        api_key: the per-agent API key issued by this decision, shown in this answer only.
        limited: set when a limit on registrations without a credential refused this one
            (:mod:`approver.domain.pending_limits`): answered 202 pending with its
            ``Retry-After``; nothing was written.
        unchanged: the decision changed nothing (no record written, no control-plane step):
            its audit event was not stored with it but is stored sampled afterwards
            (:mod:`approver.audit.sampling`).
    """

    decision: Decision
    agent: AgentRecord | None
    api_key: str | None = field(default=None, repr=False)
    limited: PendingLimited | None = None
    unchanged: bool = False


class Registrar:
    """Decides registrations against one store and one key set.

    Args:
        store: the agent store.
        key_set: the webhook's public keys.
        verification: issuer, audience, leeway and the trust policy re-checked at verify time.
        policy: the decision rules' settings (``policy.kubernetes`` must be True exactly when
            ``pods`` is given).
        audit: where audit events go (after their commit).
        clock: seconds since the epoch (``time.time``).
        pods: reads live pods (Kubernetes access), or None.
        token_annotation: the annotation the webhook stamps the token into.
        verifiers: the step-3/4 verifiers, in decision order.
        writer: runs the decision transactions (group commit, :mod:`approver.store.batcher`);
            default: one transaction per registration.
        control_plane: where approvals take effect (:mod:`approver.connectors`); None: the
            approver's own records and ``aga_`` keys are the only ones.
        owners: finds the Deployment of a proven owner ReplicaSet (Kubernetes access), or
            None: owners are recorded without their Deployment.
        pending_gate: the limits on registrations that would create a pending record without
            a credential (:mod:`approver.pending_limits.gate`); None: unlimited.
    """

    def __init__(
        self,
        *,
        store: Store,
        key_set: KeySet,
        verification: VerificationPolicy,
        policy: DecisionPolicy,
        audit: AuditSink,
        clock: Callable[[], float],
        pods: PodSource | None = None,
        token_annotation: str = DEFAULT_TOKEN_ANNOTATION,
        verifiers: Sequence[CredentialVerifier] = (),
        writer: WriteBatcher | None = None,
        control_plane: ControlPlane | None = None,
        owners: DeploymentSource | None = None,
        pending_gate: PendingGate | None = None,
    ) -> None:
        if policy.kubernetes != (pods is not None):
            raise ValueError("policy.kubernetes must be set exactly when a pod source is given")
        self._store = store
        self._key_set = key_set
        self._verification = verification
        self._policy = policy
        self._audit = audit
        self._clock = clock
        self._pods = pods
        self._annotation = token_annotation
        self._verifiers = tuple(verifiers)
        self._writer = writer or WriteBatcher(store, max_batch=1)
        self._control_plane = control_plane
        self._owners = owners
        self._gate = pending_gate
        self._limited_lines = LineSampler()
        #: Events of registrations that change nothing: stored at most once per reason and
        #: source per 10 s, and 100 per 10 s in all (approver.audit.sampling).
        self._unchanged = LineSampler(max_per_window=UNCHANGED_EVENTS_PER_WINDOW)
        #: Security-relevant ones: per reason and source only, so junk from many addresses
        #: cannot hide a copied token's line; stored within a budget per reason.
        self._security_lines = LineSampler()
        self._security_stored = WindowBudget(per_window=SECURITY_EVENTS_STORED_PER_WINDOW)

    @property
    def pending_gate(self) -> PendingGate | None:
        """The limits on unauthenticated pending registrations (None: none)."""
        return self._gate

    async def register(
        self,
        *,
        request: RegistrationRequest,
        headers: Mapping[str, str],
        body: bytes | None = None,
        client_ip: str | None = None,
    ) -> Registration:
        """Decide one registration and store its effect.

        Args:
            request: the validated body.
            headers: the request headers (case-insensitive mapping); only the credential
                headers are read.
            body: the body the control plane receives
            (:func:`approver.domain.requests.forwarded_body`:
                the members it reads, as the agent sent them); default: rebuilt from
                ``request``.
            client_ip: the agent's address as this approver saw it (for the control plane's
                per-client limits), if known.

        Returns:
            The decision, the stored record, and the per-agent API key when one was issued;
            or, for a registration a limit refused (``limited``), a pending decision, no
            record, nothing written and an audit event emitted (not stored).

        Raises:
            StoreUnavailable: the database could not decide now; nothing was written, and an
                audit event with reason ``store_unavailable`` was emitted (not stored).
            ControlPlaneUnavailable: (with a control plane) it could not be asked now; nothing
                was written; an audit event with reason ``control_plane_unavailable`` was
                emitted (not stored).
            ControlPlaneRefused: the control plane refuses this body for good (its
                validation); nothing was written.
        """
        now = self._clock()
        started = time.monotonic()
        facts = await self._facts(request, headers, now=now, client_ip=client_ip)
        admission = Admission()
        try:
            if self._control_plane is None:
                registration, event = await self._decide_and_write(
                    facts, now=now, admission=admission
                )
            else:
                intent = AgentIntent(
                    agent_id=request.agent_id,
                    body=body if body is not None else request_body(request),
                    client_ip=client_ip,
                )
                # One deadline for the whole answer: time spent reading the pod counts against
                # the control plane's budget (StreamSpace's agent gives up after 10 s).
                deadline = started + self._control_plane.budget_seconds
                registration, event = await self._through_control_plane(
                    self._control_plane,
                    facts,
                    intent,
                    now=now,
                    deadline=deadline,
                    admission=admission,
                )
        except (StoreUnavailable, ControlPlaneUnavailable) as exc:
            reason = (
                "store_unavailable"
                if isinstance(exc, StoreUnavailable)
                else CONTROL_PLANE_UNAVAILABLE
            )
            # One line per reason and source per window: a hang under load is not a flood of
            # identical lines (approver.audit.sampling).
            left_out = self._limited_lines.admit((reason, client_ip), time.monotonic())
            if left_out is not None:
                event = _event(
                    facts,
                    at=datetime.fromtimestamp(now, UTC),
                    decision="error",
                    reason=reason,
                    message=str(exc),
                )
                self._audit.emit(
                    _noting_left_out(event, left_out, self._limited_lines.window_seconds)
                )
            raise
        if event is None:
            return registration
        if registration.unchanged:
            stored = await self._store_sampled(facts, event)
            if stored is None:
                return registration  # left out by the sampling of events that change nothing
            event = stored
        if registration.limited is not None:
            # A flood of refused registrations is one line per limit and source per window,
            # not one per request (approver.audit.sampling); the metric counts each.
            key = (registration.limited.limit, client_ip)
            left_out = self._limited_lines.admit(key, time.monotonic())
            if left_out is None:
                return registration
            event = _noting_left_out(event, left_out, self._limited_lines.window_seconds)
        self._audit.emit(event)
        return registration

    async def _store_sampled(self, facts: Facts, event: AuditEvent) -> AuditEvent | None:
        """Store ``event``, of a registration that changed nothing, if the sampling admits it,
        in a transaction of its own: the sampling is only consulted once the decision has
        committed, so a transaction rolled back and run again never loses the line. None: left
        out. The returned event is to be emitted (stored or not).

        Sampling (approver.audit.sampling): at most one event per reason and source per window;
        the admitted one says how many it left out. Others than security-relevant events: 100
        per window in all. Security-relevant events (``security: true``) are not bound by those
        100, so a flood of junk cannot hide a copied token; they are stored up to
        :data:`SECURITY_EVENTS_STORED_PER_WINDOW` per reason per window and emitted unstored
        past it. A store that fails now still gets the line emitted."""
        key = (event.reason, facts.source_address)
        now = time.monotonic()
        sampler = self._security_lines if event.security else self._unchanged
        left_out = sampler.admit(key, now)
        if left_out is None:
            return None
        event = _noting_left_out(event, left_out, sampler.window_seconds)
        if event.security and not self._security_stored.take(event.reason, now):
            return event.model_copy(
                update={"message": f"{event.message}; not stored: over the stored budget"}
            )

        async def store(tx: Transaction) -> AuditEvent:
            return await tx.append_audit(event)

        try:
            return await self._writer.run(store)
        except StoreUnavailable as exc:
            log.warning("audit event of %s not stored: %s", facts.request.agent_id, exc)
            return event

    async def _facts(
        self,
        request: RegistrationRequest,
        headers: Mapping[str, str],
        *,
        now: float,
        client_ip: str | None,
    ) -> Facts:
        """Everything checked before the transaction: credentials, the token's verification,
        the live pod, the step-3/4 verdicts."""
        presented = presented_credentials(headers)
        verification = self._verify(presented.bootstrap, now=int(now))
        pod_name = bound_pod_name(request, agent_id_prefix=self._policy.agent_id_prefix)
        pod = await self._look_at_pod(
            request, presented.bootstrap, verification, pod_name, source_address=client_ip
        )
        outcomes = tuple(
            [await v.verify(request=request, headers=headers, now=now) for v in self._verifiers]
        )
        facts = Facts(
            request=request,
            presented=presented,
            verification=verification,
            pod_name=pod_name,
            pod=pod,
            outcomes=outcomes,
            source_address=client_ip,
            deployments=await self._deployments(verification, pod, outcomes, pod_name),
        )
        return facts

    async def _deployments(
        self,
        verification: Verification,
        pod: PodEvidence | None,
        outcomes: Sequence[CredentialOutcome],
        pod_name: str | None,
    ) -> dict[str, OwnerRef]:
        """The Deployment of each owner ReplicaSet a verified credential may prove (the
        verified token's ``owner`` once its live pod passed; the ``controller`` of an accepted
        outcome naming the agent's pod ``pod_name``), by ReplicaSet UID. Only candidates bound
        to a live pod are read, never an owner a registration merely claims; the decision then
        keeps the one it proves. A failed read is logged and leaves that ReplicaSet without
        its Deployment: the registration goes on, and its retry reads again."""
        if self._owners is None:
            return {}
        candidates: list[tuple[str, OwnerRef]] = []
        claims = verification if isinstance(verification, BootstrapClaims) else None
        if claims is not None and claims.owner is not None and pod and pod.check is PodCheck.OK:
            candidates.append((claims.namespace, claims.owner))
        for outcome in outcomes:
            bound = outcome.pod_name is not None and outcome.pod_name == pod_name
            if outcome.accepted and bound and outcome.controller and outcome.namespace:
                candidates.append((outcome.namespace, outcome.controller))
        found: dict[str, OwnerRef] = {}
        for namespace, owner in candidates:
            if owner.kind != REPLICA_SET or owner.uid in found:
                continue
            try:
                deployment = await self._owners.deployment_of(namespace, owner)
            except OwnerLookupError as exc:
                log.warning(
                    "replicaset %s/%s: %s; its agent is recorded without its Deployment",
                    namespace,
                    owner.name,
                    exc,
                )
                continue
            if deployment is not None:
                found[owner.uid] = deployment
        return found

    async def _through_control_plane(
        self,
        control_plane: ControlPlane,
        facts: Facts,
        intent: AgentIntent,
        *,
        now: float,
        deadline: float,
        admission: Admission,
    ) -> tuple[Registration, AuditEvent | None]:
        """A registration whose approval must take effect in the control plane (module
        docstring, "With a control plane"); its calls end by ``deadline`` (monotonic). A
        registration a limit refuses in the preview asks the control plane nothing."""
        refusal = control_plane.refusal(request_fields(facts.request))
        if refusal is not None:
            raise ControlPlaneRefused(refusal)
        for _ in range(MAX_ATTEMPTS):
            preview, existing = await self._writer.run(
                lambda tx: self._preview_in(tx, facts, now=now, admission=admission)
            )
            step = registration_step(
                issue_key=preview.issue_key,
                pending=preview.outcome is Outcome.PENDING,
                creates=preview.effect is Effect.CREATE,
                existing=existing,
            )
            if admission.refusal is not None:
                step = CpStep.NONE  # limited: the transaction below writes nothing either
            grant: Grant | None = None
            state: ControlPlaneState | None = None
            try:
                if step is CpStep.ADMIT:
                    state = await control_plane.admit(intent, deadline=deadline)
                elif step is CpStep.GRANT:
                    known = existing.control_plane if existing is not None else None
                    grant = await control_plane.grant(intent, known=known, deadline=deadline)
                    state = ControlPlaneState.APPROVED
            except ControlPlaneRejected as exc:
                return await self._rejected_there(control_plane, facts, exc, now=now)
            try:
                registration, event = await self._decide_and_write(
                    facts,
                    now=now,
                    grant=grant,
                    control_plane=state,
                    step=step,
                    admission=admission,
                )
            except _KeyNeeded:
                continue  # the decision changed since the preview: ask again
            if grant is not None and registration.api_key is None and not grant.rotated:
                await self._withdraw(control_plane, intent.agent_id)
            return registration, event
        raise ControlPlaneUnavailable(
            "the decision kept changing while the control plane was asked"
        )

    async def _withdraw(self, control_plane: ControlPlane, agent_id: str) -> None:
        """Undo an approval made there for a decision that ended otherwise (a copied token
        that lost the ``jti`` race, a quota filled meanwhile): nobody holds its key."""
        try:
            await control_plane.remove(agent_id)
        except ControlPlaneError as exc:
            log.warning("could not withdraw the control-plane approval of %s: %s", agent_id, exc)

    async def _rejected_there(
        self,
        control_plane: ControlPlane,
        facts: Facts,
        refusal: ControlPlaneRejected,
        *,
        now: float,
    ) -> tuple[Registration, AuditEvent]:
        """The control plane's administrator said no: recorded as their decision, 403."""
        at = datetime.fromtimestamp(now, UTC)
        actor = f"{control_plane.name}:{refusal.decided_by or 'admin'}"
        removed = refusal.reason == REMOVED_IN_CONTROL_PLANE
        decision = Decision(Outcome.REJECTED, refusal.reason, Step.KNOWN_AGENT)

        async def work(tx: Transaction) -> tuple[Registration, AuditEvent]:
            existing = await tx.get_agent(facts.request.agent_id, lock=True)
            record = existing
            if existing is not None:
                event = LifecycleEvent.ADMIN_REVOKE if removed else LifecycleEvent.ADMIN_REJECT
                if allowed(event, existing):
                    record = apply(existing, event, at=at, actor=actor, reason=refusal.reason)
                record = replace(
                    record or existing,
                    control_plane=(
                        ControlPlaneState.ABSENT if removed else ControlPlaneState.REJECTED
                    ),
                    control_plane_at=at,
                )
                await tx.update_agent(record)
                await end_certificates(tx, existing, record, at=at, actor=actor)
            registration = Registration(decision=decision, agent=record)
            stored = await tx.append_audit(
                _event(
                    facts,
                    at=at,
                    decision=Outcome.REJECTED.value,
                    reason=refusal.reason,
                    message=f"control plane {control_plane.name}: {refusal}",
                )
            )
            return registration, stored

        return await self._writer.run(work)

    def _verify(self, credential: BootstrapCredential | None, *, now: int) -> Verification:
        """The token's verification, with auto-approval off too (the binding it proves is
        recorded on the pending record)."""
        if credential is None:
            return None
        try:
            return verify(credential.token, self._key_set, self._verification, now=now)
        except TokenError as exc:
            return exc
        except jwt.InvalidTokenError:
            # PyJWT refusing a decoded header member (a non-string "kid", a bad "crit") escapes
            # read_header as a raw PyJWT error; it is a malformed token all the same.
            return MalformedToken("JOSE header has an invalid member")

    async def _look_at_pod(
        self,
        request: RegistrationRequest,
        credential: BootstrapCredential | None,
        verification: Verification,
        pod_name: str | None,
        *,
        source_address: str | None,
    ) -> PodEvidence | None:
        """The live pod's verdict, when Kubernetes access is on and the verified token names
        the agent's pod (the only case the decision looks at it). An expired token's authentic
        claims count too: an agent re-presenting its bound token needs its pod checked."""
        if self._pods is None or credential is None or pod_name is None:
            return None
        claims = _authentic_claims(verification)
        if claims is None:
            return None
        if not claims.pod.admits(pod_name) or pod_namespace_mismatch(
            request, namespace=claims.namespace
        ):
            return None
        try:
            live = await self._pods.read(claims.namespace, pod_name)
        except PodLookupError as exc:
            log.warning("pod %s/%s: %s", claims.namespace, pod_name, exc)
            return PodEvidence(PodCheck.LOOKUP_FAILED)
        return check_live_pod(
            live,
            token=credential.token,
            annotation=self._annotation,
            owner=claims.owner,
            source_address=source_address,
            bind_source_address=self._policy.bind_source_address,
        )

    async def _decide_and_write(
        self,
        facts: Facts,
        *,
        now: float,
        grant: Grant | None = None,
        control_plane: ControlPlaneState | None = None,
        step: CpStep = CpStep.NONE,
        admission: Admission | None = None,
    ) -> tuple[Registration, AuditEvent | None]:
        async def work(tx: Transaction) -> tuple[Registration, AuditEvent | None]:
            registration = await self._decide_in(
                tx, facts, now=now, grant=grant, control_plane=control_plane, admission=admission
            )
            if registration.limited is not None:
                # Nothing written, nothing stored: the event is only emitted, as a JSON line.
                return registration, _limited_event(facts, registration.limited, now=now)
            note = (
                f"; control plane: {step.value} -> {control_plane.value}" if control_plane else ""
            )
            event = _registration_event(facts, registration, now=now, note=note)
            if registration.decision.effect is Effect.NONE and control_plane is None:
                # Changes nothing (a retry, a refusal, a known agent again): anyone can send
                # these, so the event is stored sampled, after this transaction
                # (:meth:`_store_sampled`), not one row each.
                return replace(registration, unchanged=True), event
            stored = await tx.append_audit(event)
            return registration, stored

        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await self._writer.run(work)
            except StoreConflict:
                log.info(
                    "registration of %s met a concurrent write (attempt %d); deciding again",
                    facts.request.agent_id,
                    attempt,
                )
        raise StoreUnavailable(f"registration still conflicting after {MAX_ATTEMPTS} attempts")

    async def _preview_in(
        self, tx: Transaction, facts: Facts, *, now: float, admission: Admission | None = None
    ) -> tuple[Decision, AgentRecord | None]:
        """The decision the transaction would make, without writing anything (the ``jti`` is
        assumed burnable when unburnt, the verifiers' claims are not taken); a creation the
        limits refuse is judged here (``admission``), before the control plane is asked."""
        existing, decision = await self._view_decision(tx, facts, lock=False)
        if self._gate is not None and admission is not None:
            await self._gate.check(tx, facts, decision, admission, lock=False)
        return decision, existing

    async def _view_decision(
        self, tx: Transaction, facts: Facts, *, lock: bool
    ) -> tuple[AgentRecord | None, Decision]:
        """The record and the decision of one transaction attempt: everything the decision
        needs read up front in one statement (the record, locked when ``lock``; who burnt the
        token's ``jti``), one :func:`decide`, then the quota (reads and locks only when it
        applies; a pure fold, :func:`apply_quota`)."""
        claims = facts.verification if isinstance(facts.verification, BootstrapClaims) else None
        agent_id = facts.request.agent_id
        if claims is not None:
            existing, owner = await tx.get_agent_and_jti_owner(agent_id, claims.jti, lock=lock)
        else:
            existing, owner = await tx.get_agent(agent_id, lock=lock), None
        view = StoreView(agent=existing, jti_owner=owner)
        decision = decide(facts=facts, view=view, policy=self._policy)
        return existing, await self._quota(tx, decision, existing)

    async def _decide_in(
        self,
        tx: Transaction,
        facts: Facts,
        *,
        now: float,
        grant: Grant | None = None,
        control_plane: ControlPlaneState | None = None,
        admission: Admission | None = None,
    ) -> Registration:
        """Decide and write inside ``tx`` (order in the module docstring). A ``jti`` burnt by a
        concurrent transaction since it was read is a :class:`StoreConflict`: the attempt is
        rolled back and decided again, reading the winner. A creation of a pending record
        without a credential asks the limits first (:mod:`approver.pending_limits.gate`); a
        refused one writes nothing."""
        existing, decision = await self._view_decision(tx, facts, lock=True)
        if self._gate is not None and admission is not None:
            limited = await self._gate.check(tx, facts, decision, admission, lock=True)
            if limited is not None:
                return Registration(decision=limited_decision(limited), agent=None, limited=limited)
        claims = facts.verification if isinstance(facts.verification, BootstrapClaims) else None
        at = datetime.fromtimestamp(now, UTC)
        used = decision.outcome_used
        if decision.outcome is Outcome.APPROVED and used is not None:
            verifier = next((v for v in self._verifiers if v.method is used.approval_method), None)
            refusal = await verifier.claim(tx, used, now=now) if verifier else None
            if refusal is not None:
                decision = demote(decision, refusal, existing)
        if decision.claim_jti and claims is not None:
            if facts.kid is None:
                raise ValueError("a jti can only be burnt for a verified token")
            use = TokenUse(
                jti=claims.jti,
                agent_id=facts.request.agent_id,
                kid=facts.kid,
                namespace=claims.namespace,
                used_at=at,
                expires_at=datetime.fromtimestamp(
                    claims.exp + self._verification.leeway_seconds, UTC
                ),
                pod_uid=decision.pod_uid,
            )
            if not await tx.claim_jti(use):
                raise StoreConflict("the token's jti was burnt by a concurrent registration")
        if decision.issue_key and self._control_plane is not None:
            if grant is None:
                raise _KeyNeeded
            api_key: str | None = grant.credential
        else:
            api_key = new_agent_key() if decision.issue_key else None
            if grant is not None:
                control_plane = None  # obtained, but this decision hands out no key
        record = await self._write(tx, decision, existing, facts, at=at, key=api_key)
        if record is not None and control_plane not in (None, record.control_plane):
            record = replace(record, control_plane=control_plane, control_plane_at=at)
            await tx.update_agent(record)
        return Registration(decision=decision, agent=record, api_key=api_key)

    async def _quota(
        self, tx: Transaction, decision: Decision, existing: AgentRecord | None
    ) -> Decision:
        policy = self._policy
        if not needs_quota(decision, existing, policy):
            return decision
        quota = policy.quota
        namespace = decision.namespace if quota.per_namespace is not None else None
        owner = decision.owner
        owner_uid = owner.uid if owner is not None and quota.per_owner is not None else None
        keys = []
        if namespace is not None:
            keys.append(lock_key("namespace", namespace))
        if owner_uid is not None:
            keys.append(lock_key("owner", owner_uid))
        await tx.lock_keys(keys)
        usage = QuotaUsage(
            namespace_active=(
                await tx.count_active_auto(namespace=namespace) if namespace is not None else None
            ),
            owner_active=(
                await tx.count_active_auto(owner_uid=owner_uid) if owner_uid is not None else None
            ),
        )
        return apply_quota(decision, usage, quota, existing)

    async def _write(
        self,
        tx: Transaction,
        decision: Decision,
        existing: AgentRecord | None,
        facts: Facts,
        *,
        at: datetime,
        key: str | None,
    ) -> AgentRecord | None:
        """Apply ``decision.effect``. Returns the record as stored."""
        effect = decision.effect
        if effect is Effect.NONE:
            return existing
        approved = decision.outcome is Outcome.APPROVED
        method = decision.approval_method
        actor = REGISTRATION_ACTOR
        if approved and method is not None:
            actor = AUTOMATIC_ACTORS.get(method, REGISTRATION_ACTOR)
        if effect is Effect.ISSUE_KEY:
            if existing is None or key is None:
                raise ValueError("a key is issued only to a known, active agent")
            record = replace(
                existing, updated_at=at, updated_by=REGISTRATION_ACTOR, **_key_fields(key, at)
            )
            await tx.update_agent(record)
            return record
        # Each record is built in one construction (or one ``replace``) from field changes: a
        # record has 40 fields, and every copy of a frozen dataclass sets each of them.
        request = facts.request
        changes = _body_fields(request) | _binding_fields(existing, decision, facts)
        if effect is Effect.CREATE:
            if approved and method is not None:
                changes |= first_approval_fields(at=at, actor=actor, method=method)
            if key is not None:
                changes |= _key_fields(key, at)
            record = AgentRecord(
                id=uuid.uuid4(),
                agent_id=request.agent_id,
                status=decision.agent_status,
                reason=decision.reason,
                created_at=at,
                updated_at=at,
                updated_by=actor,
                **(_UNSET | changes),
            )
            await tx.insert_agent(record)
            return record
        if existing is None:
            raise ValueError(f"{effect.value} needs a known agent")
        event = decision.lifecycle_event
        if event is None:
            raise ValueError(f"{effect.value} is not a lifecycle event")
        record = apply(
            existing,
            event,
            at=at,
            actor=actor,
            reason=decision.reason,
            approval_method=method,
            extra=changes,
        )
        if key is not None:
            # After ``apply``: a re-bind clears the old key's hash, the new one replaces it.
            record = replace(record, **_key_fields(key, at))
        await tx.update_agent(record)
        await end_certificates(
            tx, existing, record, at=at, actor=actor, rebound=effect is Effect.REBIND
        )
        return record


class _KeyNeeded(Exception):
    """Internal: the transaction's decision hands out a key the control plane was not asked
    for (the decision changed since the preview); rolled back, planned again."""


def request_fields(request: RegistrationRequest) -> dict[str, object]:
    """The registration body's members as a JSON object (aliases, absent ones left out)."""
    return request.model_dump(by_alias=True, exclude_none=True)


def request_body(request: RegistrationRequest) -> bytes:
    """A registration body rebuilt from ``request`` (for a control plane, when the agent's own
    bytes are not at hand)."""
    return jsonio.dumps(request_fields(request))


def _authentic_claims(verification: Verification) -> BootstrapClaims | None:
    """The claims of a verified token, or of one that failed only on ``exp``."""
    if isinstance(verification, BootstrapClaims):
        return verification
    if isinstance(verification, Expired) and isinstance(verification.claims, BootstrapClaims):
        return verification.claims
    return None


# The fields a new record has no value for until the registration sets them.
_UNSET: dict[str, Any] = {
    "approval_method": None,
    "approved_by": None,
    "approved_at": None,
}


def _key_fields(key: str, at: datetime) -> dict[str, Any]:
    """A new per-agent API key's hash and issue time, as field changes (the key itself is never
    stored)."""
    return {"api_key_hash": key_digest(key), "api_key_issued_at": at}


def _body_fields(request: RegistrationRequest) -> dict[str, Any]:
    """What the agent registered (platform, region, capacity, metadata), as field changes."""
    return {
        "platform": request.platform,
        "region": request.region,
        "capacity": dict(request.capacity) if request.capacity is not None else None,
        "metadata": dict(request.metadata),
    }


def _binding_fields(record: AgentRecord | None, decision: Decision, facts: Facts) -> dict[str, Any]:
    """The binding a decision writes, as field changes: from the verified token or the step-3/4
    outcome (the ``jti`` only when approved); the owner only as the decision proved it
    (:mod:`approver.domain.decision`, "Owner"), its Deployment as read now or, when this read
    failed, as ``record`` (the stored one, None for a new agent) holds it for the same owner."""
    claims = decision.claims
    owner = decision.owner
    deployment = decision.deployment
    if deployment is None and record is not None and owner is not None:
        kept = record.owner_deployment_name, record.owner_deployment_uid
        if record.owner_uid == owner.uid and kept[0] is not None and kept[1] is not None:
            deployment = OwnerRef(kind=DEPLOYMENT, name=kept[0], uid=kept[1])
    approved = decision.outcome is Outcome.APPROVED
    return {
        "jti": claims.jti if approved and claims else None,
        "kid": facts.kid if claims else None,
        "cluster": claims.cluster if claims else None,
        "namespace": decision.namespace,
        "service_account": decision.service_account,
        "pod_name": decision.pod_name if (claims or decision.outcome_used) else None,
        "pod_uid": decision.pod_uid,
        "owner_kind": owner.kind if owner else None,
        "owner_name": owner.name if owner else None,
        "owner_uid": owner.uid if owner else None,
        "owner_deployment_name": deployment.name if deployment else None,
        "owner_deployment_uid": deployment.uid if deployment else None,
        "owner_evidence": decision.owner_evidence if owner else None,
        "credential_hash": decision.credential_digest or facts.presented.primary,
        "source_address": facts.source_address,
    }


def _event(
    facts: Facts,
    *,
    at: datetime,
    decision: str,
    reason: str,
    security: bool = False,
    approval_method: str | None = None,
    pod: str | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
    credential: str | None = None,
    message: str | None = None,
) -> AuditEvent:
    claims = facts.verification if isinstance(facts.verification, BootstrapClaims) else None
    if pod is None and claims is not None:
        pod = claims.pod.name or claims.pod.generate_name
    presented: Presented = facts.presented
    return AuditEvent(
        time=at,
        component="approver",
        event=REGISTER_EVENT,
        decision=decision,
        reason=reason,
        security=security,
        cluster=claims.cluster if claims else None,
        namespace=claims.namespace if claims else namespace,
        pod=pod,
        service_account=claims.service_account if claims else service_account,
        jti=claims.jti if claims else None,
        kid=facts.kid,
        admission_uid=claims.admission_uid if claims else None,
        agent_id=facts.request.agent_id,
        approval_method=approval_method,
        credential=credential or presented.primary_fingerprint,
        message=message,
    )


def _noting_left_out(event: AuditEvent, left_out: int, window_seconds: float) -> AuditEvent:
    """``event``, its message saying how many like it were left out (none: unchanged)."""
    if not left_out:
        return event
    return event.model_copy(
        update={
            "message": f"{event.message}; {left_out} more like it in the last "
            f"{window_seconds:g} s not logged"
        }
    )


def _limited_event(facts: Facts, limited: PendingLimited, *, now: float) -> AuditEvent:
    """The audit line of a registration a limit refused (emitted, never stored)."""
    return _event(
        facts,
        at=datetime.fromtimestamp(now, UTC),
        decision=Outcome.PENDING.value,
        reason=limited.reason.value,
        message=(
            f"limit={limited.limit.value}; {limited.message}; nothing written; "
            f"Retry-After {limited.retry_after_seconds}"
        ),
    )


def _registration_event(
    facts: Facts, registration: Registration, *, now: float, note: str = ""
) -> AuditEvent:
    decision = registration.decision
    detail = f"step={decision.step.value} effect={decision.effect.value}"
    if isinstance(facts.verification, TokenError):
        detail += f"; {facts.verification.message}"
    if decision.pod_uid is not None:
        detail += f"; pod_uid={decision.pod_uid}"
    if registration.api_key is not None:
        detail += "; api key issued"
    used = decision.outcome_used
    if used is not None and used.message:
        detail += f"; {used.message}"
    detail += note
    method = decision.approval_method
    return _event(
        facts,
        at=datetime.fromtimestamp(now, UTC),
        decision=decision.outcome.value,
        reason=decision.reason,
        security=decision.security,
        approval_method=method.value if method and decision.outcome is Outcome.APPROVED else None,
        pod=decision.pod_name,
        namespace=decision.namespace,
        service_account=decision.service_account,
        credential=used.credential if used is not None else None,
        message=detail,
    )
