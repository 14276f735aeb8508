"""Registration: verify the token, decide in one transaction, write, audit. No HTTP.

:class:`Registrar` runs one registration:

1. read the presented credential (:mod:`approver.credentials`);
2. verify the bootstrap token, CPU only, before touching the database
   (:func:`bootstrap_token.verify` with the current key set and the current trust policy);
3. in one transaction: read the agent's record and who burnt the token's ``jti``, decide
   (:func:`approver.decision.decide`), burn the ``jti`` and write the record as the decision says;
   commit;
4. emit one audit event, after the commit, so the event never reports what was not stored.

When the database refuses the ``jti`` burn (another agent burnt it between our read and our
insert) or an agent id inserted concurrently, the transaction rolls back and steps 3-4 run again
with a fresh view: the loser then sees the winner's row and gets ``token_reused`` (or, for two
attempts of the same agent, the winner's answer).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from approver.credentials import BootstrapCredential, bootstrap_credential
from approver.decision import (
    TOKEN_APPROVER,
    Decision,
    DecisionPolicy,
    Effect,
    Outcome,
    StoreView,
    Verification,
    decide,
)
from approver.records import AgentRecord, TokenUse
from approver.store import Store, StoreConflict, StoreUnavailable, Transaction
from approver.wire import RegistrationRequest
from bootstrap_token import (
    AuditEvent,
    AuditSink,
    BootstrapClaims,
    KeySet,
    MalformedToken,
    TokenError,
    VerificationPolicy,
    read_header,
    verify,
)

log = logging.getLogger(__name__)

#: Attempts of the decide-and-write transaction when the database reports a conflict. One
#: conflict is expected at most (the second attempt sees the committed winner).
MAX_ATTEMPTS = 3

REGISTER_EVENT = "agent.register"


@dataclass(frozen=True, slots=True)
class Registration:
    """A registration's result: the decision, and the agent record after it (None when the
    decision kept no record: a 403 for an unknown agent, or one that proved nothing)."""

    decision: Decision
    agent: AgentRecord | None


class Registrar:
    """Decides registrations against one store and one key set.

    Args:
        store: the agent store.
        key_set: the webhook's public keys.
        verification: issuer, audience, leeway and the trust policy re-checked at verify time.
        policy: the decision rules' settings.
        audit: where audit events go.
        clock: seconds since the epoch (``time.time``).
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
    ) -> None:
        self._store = store
        self._key_set = key_set
        self._verification = verification
        self._policy = policy
        self._audit = audit
        self._clock = clock

    async def register(
        self, *, request: RegistrationRequest, headers: Mapping[str, str]
    ) -> Registration:
        """Decide one registration and store its effect.

        Args:
            request: the validated body.
            headers: the request headers (case-insensitive mapping); only the credential
                headers are read.

        Returns:
            The decision (200/202/403 via ``decision.http_status``) and the stored record.

        Raises:
            StoreUnavailable: the database could not decide now; nothing was written, and an
                audit event with reason ``store_unavailable`` was emitted.
        """
        now = self._clock()
        credential = bootstrap_credential(headers)
        presented = _Presented(credential=credential, kid=_safe_kid(credential))
        verification = self._verify(credential, now=int(now))
        try:
            registration = await self._decide_and_write(
                request=request, presented=presented, verification=verification, now=now
            )
        except StoreUnavailable as exc:
            self._audit.emit(
                _event(
                    request=request,
                    presented=presented,
                    verification=verification,
                    decision="error",
                    reason="store_unavailable",
                    message=str(exc),
                )
            )
            raise
        self._audit.emit(_registration_event(request, presented, verification, registration))
        return registration

    def _verify(self, credential: BootstrapCredential | None, *, now: int) -> Verification:
        if credential is None or not self._policy.auto_approve:
            return None
        try:
            return verify(credential.token, self._key_set, self._verification, now=now)
        except TokenError as exc:
            return exc
        except jwt.InvalidTokenError:
            # PyJWT refusing a decoded header member (a non-string "kid", a bad "crit") escapes
            # read_header as a raw PyJWT error; it is a malformed token all the same.
            return MalformedToken("JOSE header has an invalid member")

    async def _decide_and_write(
        self,
        *,
        request: RegistrationRequest,
        presented: _Presented,
        verification: Verification,
        now: float,
    ) -> Registration:
        claims = verification if isinstance(verification, BootstrapClaims) else None
        credential = presented.credential
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                async with self._store.transaction() as tx:
                    view = StoreView(
                        agent=await tx.get_agent(request.agent_id, lock=True),
                        jti_owner=await tx.jti_owner(claims.jti) if claims else None,
                    )
                    decision = decide(
                        request=request,
                        credential_hash=credential.digest if credential else None,
                        verification=verification,
                        view=view,
                        policy=self._policy,
                    )
                    agent = await self._write(
                        tx, decision, view.agent, request=request, presented=presented, now=now
                    )
                return Registration(decision=decision, agent=agent)
            except StoreConflict:
                log.info(
                    "registration of %s met a concurrent write (attempt %d); deciding again",
                    request.agent_id,
                    attempt,
                )
        raise StoreUnavailable(f"registration still conflicting after {MAX_ATTEMPTS} attempts")

    async def _write(
        self,
        tx: Transaction,
        decision: Decision,
        existing: AgentRecord | None,
        *,
        request: RegistrationRequest,
        presented: _Presented,
        now: float,
    ) -> AgentRecord | None:
        """Apply ``decision.effect``: burn the jti first (the step the database may refuse),
        then insert or re-bind the record. Returns the record as stored."""
        if decision.effect is Effect.NONE:
            return existing
        at = datetime.fromtimestamp(now, UTC)
        claims = decision.claims
        kid = presented.kid if claims else None
        if decision.claim_jti:
            if claims is None or kid is None:
                raise ValueError("a jti can only be burnt for a verified token")
            await tx.burn_jti(
                TokenUse(
                    jti=claims.jti,
                    agent_id=request.agent_id,
                    kid=kid,
                    namespace=claims.namespace,
                    used_at=at,
                    expires_at=datetime.fromtimestamp(
                        claims.exp + self._verification.leeway_seconds, UTC
                    ),
                )
            )
        approved = decision.outcome is Outcome.APPROVED
        rebind = decision.effect is Effect.REBIND
        if rebind and existing is None:
            raise ValueError("only a known agent can be re-bound")
        record = AgentRecord(
            id=existing.id if rebind and existing else uuid.uuid4(),
            agent_id=request.agent_id,
            platform=request.platform,
            region=request.region,
            capacity=request.capacity.model_dump(by_alias=True) if request.capacity else None,
            metadata=dict(request.metadata),
            status=decision.agent_status,
            approval_method=decision.approval_method if approved else None,
            approved_by=TOKEN_APPROVER if approved else None,
            approved_at=at if approved else None,
            reason=decision.reason,
            jti=claims.jti if approved and claims else None,
            kid=kid,
            cluster=claims.cluster if claims else None,
            namespace=claims.namespace if claims else None,
            pod_name=decision.pod_name if claims else None,
            pod_uid=None,
            credential_hash=presented.credential.digest if presented.credential else None,
            created_at=existing.created_at if rebind and existing else at,
            updated_at=at,
        )
        if rebind:
            await tx.update_agent(record)
        else:
            await tx.insert_agent(record)
        return record


@dataclass(frozen=True, slots=True)
class _Presented:
    """The request's credential and its unverified ``kid`` (a short string, for records and
    audit events; trusted only once verification looked it up in the key set)."""

    credential: BootstrapCredential | None
    kid: str | None


def _safe_kid(credential: BootstrapCredential | None) -> str | None:
    """The unverified ``kid`` of a presented token, for forensics: a short string or None."""
    if credential is None:
        return None
    try:
        kid = read_header(credential.token).get("kid")
    except (TokenError, jwt.InvalidTokenError):
        return None
    return kid if isinstance(kid, str) and 0 < len(kid) <= 64 else None


def _event(
    *,
    request: RegistrationRequest,
    presented: _Presented,
    verification: Verification,
    decision: str,
    reason: str,
    security: bool = False,
    approval_method: str | None = None,
    pod: str | None = None,
    message: str | None = None,
) -> AuditEvent:
    claims = verification if isinstance(verification, BootstrapClaims) else None
    if pod is None and claims is not None:
        pod = claims.pod.name or claims.pod.generate_name
    return AuditEvent(
        component="approver",
        event=REGISTER_EVENT,
        decision=decision,
        reason=reason,
        security=security,
        cluster=claims.cluster if claims else None,
        namespace=claims.namespace if claims else None,
        pod=pod,
        service_account=claims.service_account if claims else None,
        jti=claims.jti if claims else None,
        kid=presented.kid,
        admission_uid=claims.admission_uid if claims else None,
        agent_id=request.agent_id,
        approval_method=approval_method,
        credential=presented.credential.fingerprint if presented.credential else None,
        message=message,
    )


def _registration_event(
    request: RegistrationRequest,
    presented: _Presented,
    verification: Verification,
    registration: Registration,
) -> AuditEvent:
    decision = registration.decision
    detail = f"step={decision.step.value} effect={decision.effect.value}"
    if isinstance(verification, TokenError):
        detail += f"; {verification.message}"
    return _event(
        request=request,
        presented=presented,
        verification=verification,
        decision=decision.outcome.value,
        reason=decision.reason,
        security=decision.security,
        approval_method=decision.approval_method.value if decision.approval_method else None,
        pod=decision.pod_name,
        message=detail,
    )
