"""The registration decision engine: pure rules, no I/O (docs/design.md, "Decision, in order").

:func:`decide` takes :class:`Facts` (what the request presented and what was checked before the
transaction: the bootstrap token's verification, the live pod, the step-3/4 verdicts) and the
store's :class:`StoreView`, and returns a :class:`Decision`: the answer (200/202/403), a stable
reason code, the approval method, and what the store must write. Token verification, the pod
read and the verdicts come first (CPU and network, outside the database transaction); the view
is read inside the transaction the decision's writes go into, and :func:`decide` runs again when
the database refuses a write (a ``jti`` burnt concurrently). :func:`apply_quota` then limits
automatic approvals (:mod:`approver.domain.quota`).

Order:

1. **Known agent, same credential** (one of the request's credential hashes is the record's
   ``credential_hash`` or its per-agent key's hash; or no credential both times):

   * ``active``: approved again (idempotent). A request presenting the agent's current key gets
     no new one. A request presenting the *creating* credential instead gets a key
     (``issue_key``): the first one when none was issued yet (an administrator approved), or a
     new one that replaces (revokes) the current one when a bootstrap token, an API key or a
     service-account token made the registration: the agent lost its answer, or its
     container restarted and presents its pod's token again (even past ``exp``). With
     Kubernetes access a re-presented bootstrap token needs its live pod: same UID as bound,
     not terminating, still carrying this token (``pod_uid_mismatch`` 403*, the pod checks'
     reasons otherwise). A placeholder credential of a manually approved agent gets the key
     once only (anyone who may read the pod could present it), and, with
     ``bind_source_address``, only from the address the approved registration came from
     (``pod_address_mismatch`` 403*).
   * ``pending``: re-evaluated by steps 2-5, so a retry picks up what changed (trust, quota,
     the pod, an expired token); approves if they do (``auto_approve``). A pending record
     marked expired (``pending_expired``) is frozen: only an administrator acts on it.
   * ``rejected``, ``inactive``: refused (403) with the record's reason.
2. **Bootstrap token**: verified with the current key set and trust
   policy (security-relevant failures 403, honest ones pending); the agent's pod name must be
   admitted by the token's ``pod`` claim; ``metadata.podNamespace``, when sent, must be the
   token's namespace (``metadata.namespace`` is never compared: see :mod:`approver.domain.binding`);
   the ``jti`` must be unused or used by this same agent; with Kubernetes access the live pod
   must pass :func:`approver.domain.binding.check_live_pod`. Then ``active``, ``namespace``.
3. **API key** and 4. **service-account token**: the outcomes of the
   configured :class:`~approver.domain.ports.CredentialVerifier` (none built in yet: skipped).
   An accepted outcome naming a pod must name the agent's pod.
5. Otherwise **pending**, for an administrator.

A step that approves or refuses (403) ends the decision; a step that can only say "pending"
lets the later steps try, and the first pending reason is the answer if none approves.

**Auto-approval off** (``autoApprove.enabled`` false): nothing approves automatically; a request
presenting a credential waits with ``auto_approve_disabled``, one presenting none with
``manual_approval_required``. Steps 2-4 still run, as if auto-approval were on, for what they
prove (the registrar verifies the token, reads the live pod and asks the verifiers either way):
unless they would refuse (a 403 with auto-approval on, which proves nothing), the waiting record
keeps the binding they established (the verified claims, the pod, the proven owner and its
Deployment), so an administrator sees where the agent runs and can approve a whole workload.

**Owner.** :attr:`Decision.owner` (the record's ``owner_*``, what bulk approval by owner or by
Deployment selects on) is set only from verified evidence that binds the agent's pod:

* step 2: a verified token whose ``pod`` claim admits the agent's pod name (namespace agreeing,
  ``jti`` not another agent's) and, with Kubernetes access, whose live pod passed
  :func:`~approver.domain.binding.check_live_pod` (so its controller *is* the token's ``owner``;
  evidence ``live_pod``); without Kubernetes access the token's ``owner`` claim, which the
  webhook took from the admitted pod (evidence ``token``);
* steps 3-4: an accepted outcome bound to the agent's pod whose
  :attr:`~approver.domain.credential_outcome.CredentialOutcome.controller` was read from the live
  pod (a service-account token; evidence ``live_pod``).

A token that does not bind (``binding_not_provable``, ``namespace_mismatch``, a failed or
refused live pod) records its claims but no owner, and a request without a verified credential
never records one: its agent id names a pod, but nothing proves the request comes from it. A
pending record re-evaluated by a retry is refreshed when the retry proves an owner (or its
Deployment) the record does not hold yet, even if the reason stays the same.

A request for a *known* agent id with a *different* credential may change the record only by
being approved on its own merits (steps 2-4): that re-binds the record to the new credential
when it is ``pending``, ``inactive`` after ``pod_deleted``, or ``active`` and the new credential
names the very same pod (a token for the exact pod name, e.g. a StatefulSet pod recreated; or
the same pod UID). A ``generateName`` token admits every pod of its ReplicaSet and a generated
name is never reused, so a second such token for an active agent is a sibling pod's token, not a
recreated pod's. Any other outcome leaves the record alone and is refused
(``credential_mismatch``), so nobody can downgrade or take over an agent by knowing its id. An
administrator's reject or revoke is sticky.

Reason codes (stable, snake_case; in answers, agent records and audit events):

=============================  ======  ==========================================================
reason                         answer  meaning
=============================  ======  ==========================================================
bootstrap_token_accepted       200     token verified, trusted now, bound to this agent, ``jti``
                                       burnt by this agent (now or on an earlier attempt)
approved_by_admin              200     an administrator approved the agent (admin API)
(verifier reasons)             200     step 3/4 approved, e.g. ``api_key_accepted``,
                                       ``service_account_accepted`` (the verifier's table)
auto_approve_disabled          202     a credential was presented but ``autoApprove.enabled`` is
                                       false
manual_approval_required       202     no credential approved the agent: an administrator
                                       decides
expired                        202     token ``exp`` has passed (leeway included)
not_yet_valid                  202     token ``nbf`` lies in the future (leeway included)
namespace_not_trusted          202     the token's namespace is not in ``trust.namespaces`` now
service_account_not_allowed    202     the token's service account is not in
                                       ``trust.serviceAccounts`` now
binding_not_provable           202     no pod name could be derived from the agent, or the
                                       token's ``pod`` claim (or an outcome's pod) does not admit it
namespace_mismatch             202     ``metadata.podNamespace`` differs from the token's namespace
pod_not_found                  202     (Kubernetes) no pod of that name in the token's namespace
pod_terminating                202     (Kubernetes) the pod has a ``deletionTimestamp``
pod_owner_mismatch             202     (Kubernetes) the pod's controller is not the token's owner
pod_lookup_failed              202     (Kubernetes) the pod could not be read now
pod_address_mismatch           403*    (Kubernetes) the request does not come from the pod's
                                       address (``kubernetes.bindSourceAddress``)
quota_exceeded                 202     the namespace or owner has its maximum of active
                                       auto-approved agents
pending_expired                202     the pending registration outlived ``pendingTtlSeconds``;
                                       frozen until an administrator acts
malformed                      403*    not a compact JWS of the documented shape
bad_alg                        403*    ``alg`` is not ``EdDSA`` (``none``, HS256, ...)
unknown_kid                    403*    ``kid`` names no key of the current key set
bad_signature                  403*    the Ed25519 signature does not verify
wrong_issuer                   403*    ``iss`` is not ``token.issuer``
wrong_audience                 403*    ``aud`` is not ``token.audience``
wrong_cluster                  403*    ``cluster`` not in ``token.clusters``, or not its key's
ttl_too_long                   403*    ``exp - iat`` beyond the 24 h maximum
invalid_token                  403*    any other token failure
token_reused                   403*    the ``jti`` is already bound to another agent (a copy)
pod_token_mismatch             403*    (Kubernetes) the pod's annotation holds another token
pod_uid_mismatch               403*    (Kubernetes) a bound token presented again from a pod that
                                       is not the one it was bound to
credential_mismatch            403*    the agent id is registered with another credential, and
                                       this request did not prove a right to it
rejected_by_admin              403     an administrator rejected the agent
revoked_by_admin               403     an administrator revoked the (active) agent
pod_deleted                    403     the agent's pod was deleted; the agent is inactive
=============================  ======  ==========================================================

``*``: security-relevant, the audit event has ``security: true``. 202 creates a ``pending``
record for an unknown agent; a 403 never creates one (an id refused for a bad token stays free
for the real pod).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from approver.domain.binding import PodCheck, PodEvidence, pod_namespace_mismatch
from approver.domain.binding import bound_pod_name as bound_pod_name  # re-exported: it lived here
from approver.domain.credential_outcome import CredentialOutcome, Verdict
from approver.domain.credentials import Presented
from approver.domain.lifecycle import LifecycleEvent, allowed
from approver.domain.ports import BootstrapCheck
from approver.domain.quota import QuotaPolicy, QuotaUsage, exceeded
from approver.domain.records import AgentRecord, AgentStatus, ApprovalMethod, OwnerEvidence
from approver.domain.requests import RegistrationRequest
from bootstrap_token import BootstrapClaims, OwnerRef, TokenError


class Reason(StrEnum):
    """The approver's own reason codes (token failures use :attr:`TokenError.reason`, pod
    checks :class:`~approver.domain.binding.PodCheck`)."""

    BOOTSTRAP_TOKEN_ACCEPTED = "bootstrap_token_accepted"  # noqa: S105 - a reason code
    APPROVED_BY_ADMIN = "approved_by_admin"
    AUTO_APPROVE_DISABLED = "auto_approve_disabled"
    MANUAL_APPROVAL_REQUIRED = "manual_approval_required"
    BINDING_NOT_PROVABLE = "binding_not_provable"
    NAMESPACE_MISMATCH = "namespace_mismatch"
    QUOTA_EXCEEDED = "quota_exceeded"
    PENDING_EXPIRED = "pending_expired"
    TOKEN_REUSED = "token_reused"  # noqa: S105 - a reason code
    CREDENTIAL_MISMATCH = "credential_mismatch"
    REJECTED_BY_ADMIN = "rejected_by_admin"
    REVOKED_BY_ADMIN = "revoked_by_admin"
    POD_DELETED = "pod_deleted"
    POD_UID_MISMATCH = "pod_uid_mismatch"


#: ``approved_by``/``updated_by`` of an automatic decision, per approval method.
TOKEN_APPROVER = "bootstrap-token"  # noqa: S105 - an actor name
AUTOMATIC_ACTORS = {
    ApprovalMethod.NAMESPACE: TOKEN_APPROVER,
    ApprovalMethod.API_KEY: "api-key",
    ApprovalMethod.SERVICE_ACCOUNT: "service-account",
}
REGISTRATION_ACTOR = "registration"


class Outcome(StrEnum):
    """The answer to the agent: ``approvalStatus`` on the wire."""

    APPROVED = "approved"
    PENDING = "pending"
    REJECTED = "rejected"

    @property
    def http_status(self) -> int:
        """200, 202 or 403."""
        return _HTTP_STATUS[self]


_HTTP_STATUS = {Outcome.APPROVED: 200, Outcome.PENDING: 202, Outcome.REJECTED: 403}


class Step(StrEnum):
    """Which rule decided (for the audit event)."""

    KNOWN_AGENT = "known_agent"
    BOOTSTRAP_TOKEN = "bootstrap_token"  # noqa: S105 - a step name
    API_KEY = "api_key"
    SERVICE_ACCOUNT = "service_account"
    MANUAL = "manual"


_VERDICT_STEP = {
    ApprovalMethod.API_KEY: Step.API_KEY,
    ApprovalMethod.SERVICE_ACCOUNT: Step.SERVICE_ACCOUNT,
}


class Effect(StrEnum):
    """What the store must write for a decision, in the decision's transaction."""

    NONE = "none"  #: answer only; the record (if any) is unchanged
    CREATE = "create"  #: insert a new agent record (event ``register``)
    REBIND = "rebind"  #: the record takes this credential and binding, and becomes active
    ACTIVATE = "activate"  #: a pending record, re-evaluated, becomes active (``auto_approve``)
    REFRESH = "refresh"  #: a pending record, re-evaluated, stays pending with a new reason
    ISSUE_KEY = "issue_key"  #: an active record gets its per-agent API key (shown once)


@dataclass(frozen=True, slots=True)
class DecisionPolicy:
    """The settings the rules read.

    Attributes:
        auto_approve: ``autoApprove.enabled``; False makes every agent pending (the old way).
        agent_id_prefix: ``agentIdPrefix``; StreamSpace builds ``AGENT_ID=$(AGENT_ID_PREFIX)-
            $(POD_NAME)``, so the pod name is the agent id minus ``prefix + "-"``. None: the agent
            id is the pod name.
        kubernetes: ``kubernetes.enabled``: the live pod must be checked
            (:attr:`Facts.pod` must be given whenever a verified token names the agent's pod).
        quota: the auto-approval quota.
        bootstrap_checks: extra pure step-2 checks (:class:`~approver.domain.ports.BootstrapCheck`).
        bind_source_address: ``kubernetes.bindSourceAddress``: the live pod must be the
            request's source (:func:`approver.domain.binding.check_live_pod`, rule 5).
    """

    auto_approve: bool
    agent_id_prefix: str | None = None
    kubernetes: bool = False
    quota: QuotaPolicy = field(default_factory=QuotaPolicy)
    bootstrap_checks: tuple[BootstrapCheck, ...] = ()
    bind_source_address: bool = False


@dataclass(frozen=True, slots=True)
class StoreView:
    """What the store knows, read in the decision's transaction.

    Attributes:
        agent: the record with the request's agent id, or None.
        jti_owner: the agent id that burnt the token's ``jti``, or None: not burnt, as far as
            the caller knows (the burn itself is an atomic insert that tells otherwise).
    """

    agent: AgentRecord | None = None
    jti_owner: str | None = None


#: The outcome of verifying the presented token: its claims, the typed failure, or None when
#: nothing was verified (no token). The registrar verifies with ``autoApprove`` off too.
Verification = BootstrapClaims | TokenError | None


@dataclass(frozen=True, slots=True)
class Facts:
    """What the request presented and what was checked before the transaction.

    Attributes:
        request: the validated registration body.
        presented: the request's credentials (hashes only are compared).
        verification: the bootstrap token's verification; must not be None when a token was
            presented and ``autoApprove`` is on (with it off, None records no binding).
        pod_name: :func:`approver.domain.binding.bound_pod_name` of the request.
        pod: the live pod's verdict; None when it was not looked at (Kubernetes off, or no
            verified token naming the agent's pod).
        outcomes: the step-3/4 outcomes, in decision order (``not_applicable`` ones are
            skipped).
        source_address: the request's client address, when known.
        deployments: the Deployment of each proven owner ReplicaSet, by the ReplicaSet's UID
            (read from the Kubernetes API; :mod:`approver.domain.workloads`); a ReplicaSet
            missing here is recorded without one.
    """

    request: RegistrationRequest
    presented: Presented
    verification: Verification = None
    pod_name: str | None = None
    pod: PodEvidence | None = None
    outcomes: tuple[CredentialOutcome, ...] = ()
    source_address: str | None = None
    deployments: Mapping[str, OwnerRef] = field(default_factory=dict)

    @property
    def kid(self) -> str | None:
        """The presented token's (unverified) ``kid``, for records and audit events."""
        return self.presented.bootstrap.kid if self.presented.bootstrap is not None else None


@dataclass(frozen=True, slots=True)
class Decision:
    """One registration decision.

    Attributes:
        outcome: approved / pending / rejected.
        reason: a reason code from the module's table.
        step: which rule decided.
        effect: what to write.
        security: True when the audit event must be security-relevant.
        approval_method: set when approved (for a known agent: the record's).
        claims: the verified token's claims, when a token verified (context for the record
            and the audit event, whatever the outcome).
        pod_name: the pod name the agent was bound to (or checked against), when derived.
        pod_uid: the live pod's UID (Kubernetes) or an outcome's pod UID.
        outcome_used: the step-3/4 outcome that decided, if one did.
        claim_jti: True when the store must burn ``claims.jti`` for this agent (an atomic
            insert that fails if another agent burnt it first).
        issue_key: True when a per-agent API key is made in this decision and shown in the
            answer (the only time it is ever shown).
        credential_digest: the hash the record keeps as ``credential_hash`` when this decision
            creates or re-binds it.
        owner: the agent's pod's controller, set only when a verified credential bound the
            agent's pod (module docstring, "Owner"); None otherwise, whatever the request or
            an unbound token claims.
        deployment: the Deployment controlling ``owner`` (:attr:`Facts.deployments`), if read.
        owner_evidence: what proved ``owner``.
    """

    outcome: Outcome
    reason: str
    step: Step
    effect: Effect = Effect.NONE
    security: bool = False
    approval_method: ApprovalMethod | None = None
    claims: BootstrapClaims | None = None
    pod_name: str | None = None
    pod_uid: str | None = None
    outcome_used: CredentialOutcome | None = None
    claim_jti: bool = False
    issue_key: bool = False
    credential_digest: str | None = None
    owner: OwnerRef | None = None
    deployment: OwnerRef | None = None
    owner_evidence: OwnerEvidence | None = None

    @property
    def http_status(self) -> int:
        """200 approved, 202 pending, 403 rejected."""
        return self.outcome.http_status

    @property
    def agent_status(self) -> AgentStatus:
        """The status a record written by this decision gets."""
        return AgentStatus.ACTIVE if self.outcome is Outcome.APPROVED else AgentStatus.PENDING

    @property
    def namespace(self) -> str | None:
        """The cluster's word on the agent's namespace (token claim or step-3/4 outcome)."""
        if self.claims is not None:
            return self.claims.namespace
        return self.outcome_used.namespace if self.outcome_used is not None else None

    @property
    def service_account(self) -> str | None:
        if self.claims is not None:
            return self.claims.service_account
        return self.outcome_used.service_account if self.outcome_used is not None else None

    @property
    def lifecycle_event(self) -> LifecycleEvent | None:
        """The lifecycle event the effect is (None: no status change)."""
        return _EFFECT_EVENTS.get(self.effect)


_EFFECT_EVENTS = {
    Effect.CREATE: LifecycleEvent.REGISTER,
    Effect.REBIND: LifecycleEvent.REBIND,
    Effect.ACTIVATE: LifecycleEvent.AUTO_APPROVE,
    Effect.REFRESH: LifecycleEvent.REFRESH,
}


def decide(*, facts: Facts, view: StoreView, policy: DecisionPolicy) -> Decision:
    """Decide a registration (rules and reason codes in the module docstring).

    Args:
        facts: what the request presented and the checks made before the transaction.
        view: the store's view, read in the same transaction the decision's writes go into.
        policy: the rules' settings.

    Returns:
        The decision. Pure: the same arguments give the same decision.

    Raises:
        ValueError: a caller bug: a token was presented with auto-approval on but not
            verified, or Kubernetes is on and the live pod was not looked at although the
            token names the agent's pod.
    """
    existing = view.agent
    if existing is not None and _proves(facts.presented, existing):
        return _known_agent(existing, facts, view.jti_owner, policy)
    fresh = _evaluate(facts, view.jti_owner, policy)
    if existing is None:
        return fresh
    return _other_credential(existing, fresh)


def needs_quota(decision: Decision, existing: AgentRecord | None, policy: DecisionPolicy) -> bool:
    """True when ``decision`` makes an agent active automatically and a quota is configured:
    the caller then counts (:class:`~approver.domain.quota.QuotaUsage`) and calls
    :func:`apply_quota`."""
    if not policy.quota.enabled or decision.outcome is not Outcome.APPROVED:
        return False
    if decision.approval_method in (None, ApprovalMethod.MANUAL):
        return False
    if decision.effect not in (Effect.CREATE, Effect.ACTIVATE, Effect.REBIND):
        return False
    return existing is None or existing.status is not AgentStatus.ACTIVE


def apply_quota(
    decision: Decision, usage: QuotaUsage, policy: QuotaPolicy, existing: AgentRecord | None
) -> Decision:
    """``decision``, or the same agent left pending with ``quota_exceeded`` when admitting it
    would pass a limit (:mod:`approver.domain.quota`)."""
    if not exceeded(usage, policy):
        return decision
    return demote(decision, Reason.QUOTA_EXCEEDED, existing)


def demote(decision: Decision, reason: str, existing: AgentRecord | None) -> Decision:
    """An approval turned into ``pending`` with ``reason`` (the quota, or a verifier's claim
    refused in the transaction): nothing is burnt, no key is issued; a new agent gets a pending
    record, a pending one its new reason, and a re-bind leaves the record as it is."""
    if decision.effect is Effect.CREATE:
        effect = Effect.CREATE
    elif decision.effect is Effect.ACTIVATE and existing is not None:
        changed = existing.reason != reason or _owner_news(decision, existing)
        effect = Effect.REFRESH if changed else Effect.NONE
    else:
        effect = Effect.NONE
    return replace(
        decision,
        outcome=Outcome.PENDING,
        reason=reason,
        effect=effect,
        approval_method=None,
        claim_jti=False,
        issue_key=False,
    )


def _proves(presented: Presented, existing: AgentRecord) -> bool:
    """Step 1's test: the request presents the record's credential (or its per-agent key)."""
    if presented.proves(existing.credential_hash):
        return True
    return existing.api_key_hash is not None and existing.api_key_hash in presented.digests


def _known_agent(
    existing: AgentRecord, facts: Facts, jti_owner: str | None, policy: DecisionPolicy
) -> Decision:
    """Step 1 (see the module docstring)."""
    match existing.status:
        case AgentStatus.ACTIVE:
            return _active_agent(existing, facts, policy)
        case AgentStatus.PENDING:
            if existing.expired_at is not None:
                return Decision(Outcome.PENDING, Reason.PENDING_EXPIRED, Step.KNOWN_AGENT)
            fresh = _evaluate(facts, jti_owner, policy)
            if fresh.outcome is Outcome.APPROVED:
                return replace(fresh, effect=Effect.ACTIVATE, issue_key=True)
            if fresh.outcome is Outcome.REJECTED:
                return replace(fresh, effect=Effect.NONE)
            changed = fresh.reason != existing.reason or _owner_news(fresh, existing)
            return replace(fresh, effect=Effect.REFRESH if changed else Effect.NONE)
        case AgentStatus.REJECTED | AgentStatus.INACTIVE:
            return Decision(Outcome.REJECTED, existing.reason, Step.KNOWN_AGENT)


def _owner_news(fresh: Decision, existing: AgentRecord) -> bool:
    """True when ``fresh`` proves an owner the pending record does not hold as proven: a first
    proof, another controller, stronger evidence, or its Deployment read since (a retry after a
    failed ReplicaSet read). A retry that proves less never clears what the record holds."""
    owner = fresh.owner
    if owner is None:
        return False
    if (existing.owner_uid, existing.owner_evidence) != (owner.uid, fresh.owner_evidence):
        return True
    deployment = fresh.deployment
    return deployment is not None and deployment.uid != existing.owner_deployment_uid


def _with_owner(
    decision: Decision, owner: OwnerRef | None, evidence: OwnerEvidence, facts: Facts
) -> Decision:
    """``decision`` with a proven owner and the Deployment read for it (module docstring,
    "Owner"); unchanged when there is no owner."""
    if owner is None:
        return decision
    return replace(
        decision,
        owner=owner,
        deployment=facts.deployments.get(owner.uid),
        owner_evidence=evidence,
    )


def _active_agent(existing: AgentRecord, facts: Facts, policy: DecisionPolicy) -> Decision:
    """Step 1 for an active agent: approved again; a key when it proves the credential that
    created the registration rather than its current key (module docstring, step 1)."""
    digests = facts.presented.digests
    again = Decision(
        Outcome.APPROVED,
        existing.reason,
        Step.KNOWN_AGENT,
        approval_method=existing.approval_method,
    )
    holds_key = existing.api_key_hash is not None and existing.api_key_hash in digests
    if holds_key or existing.credential_hash is None or existing.credential_hash not in digests:
        return again
    if existing.approval_method is ApprovalMethod.MANUAL:
        if existing.api_key_hash is not None:
            return again  # a public placeholder made it: the key is handed over once only
        if policy.bind_source_address and existing.source_address not in (
            None,
            facts.source_address,
        ):
            # The placeholder (the pod's UID) can be read by anyone who may get pods: the key
            # goes only where the registration an administrator approved came from.
            return Decision(
                Outcome.REJECTED, PodCheck.ADDRESS_MISMATCH.value, Step.KNOWN_AGENT, security=True
            )
    elif existing.api_key_hash is not None:
        refusal = _reissue_refusal(existing, facts, policy)
        if refusal is not None:
            return refusal
    return replace(again, effect=Effect.ISSUE_KEY, issue_key=True)


def _reissue_refusal(
    existing: AgentRecord, facts: Facts, policy: DecisionPolicy
) -> Decision | None:
    """Why a bound bootstrap token presented again (a lost answer, a restarted container) may
    not get a new key now, or None: with Kubernetes access its pod must still live, carry
    this very token and be the pod it was bound to (same UID)."""
    if existing.jti is None or not policy.kubernetes:
        return None
    evidence = facts.pod
    if evidence is None or evidence.check is PodCheck.LOOKUP_FAILED:
        reason = evidence.check.value if evidence is not None else Reason.BINDING_NOT_PROVABLE
        return Decision(Outcome.PENDING, reason, Step.KNOWN_AGENT)
    if evidence.check is PodCheck.OK and existing.pod_uid not in (None, evidence.uid):
        return Decision(Outcome.REJECTED, Reason.POD_UID_MISMATCH, Step.KNOWN_AGENT, security=True)
    if evidence.check is not PodCheck.OK:
        security = evidence.check.security_relevant or evidence.check is PodCheck.OWNER_MISMATCH
        return Decision(Outcome.REJECTED, evidence.check.value, Step.KNOWN_AGENT, security=security)
    return None


def _pending(
    reason: str,
    step: Step,
    *,
    claims: BootstrapClaims | None = None,
    pod_name: str | None = None,
    pod_uid: str | None = None,
    outcome_used: CredentialOutcome | None = None,
    credential_digest: str | None = None,
) -> Decision:
    """A pending decision that creates a record (for an unknown agent)."""
    return Decision(
        Outcome.PENDING,
        reason,
        step,
        Effect.CREATE,
        claims=claims,
        pod_name=pod_name,
        pod_uid=pod_uid,
        outcome_used=outcome_used,
        credential_digest=credential_digest,
    )


def _evaluate(facts: Facts, jti_owner: str | None, policy: DecisionPolicy) -> Decision:
    """Steps 2-5 for a request on its own merits (as if the agent were unknown)."""
    if not policy.auto_approve:
        return _without_auto_approval(facts, jti_owner, policy)
    waiting: Decision | None = None
    presented = facts.presented
    if presented.bootstrap is not None:
        decision = _bootstrap_step(facts, jti_owner, policy)
        if decision.outcome is not Outcome.PENDING:
            return decision
        waiting = decision
    for outcome in facts.outcomes:
        if outcome.verdict is Verdict.NOT_APPLICABLE:
            continue
        decision = _outcome_step(outcome, facts)
        if decision.outcome is not Outcome.PENDING:
            return decision
        waiting = waiting or decision
    if waiting is not None:
        return waiting
    return _pending(
        Reason.MANUAL_APPROVAL_REQUIRED, Step.MANUAL, credential_digest=presented.primary
    )


def _without_auto_approval(facts: Facts, jti_owner: str | None, policy: DecisionPolicy) -> Decision:
    """Steps 2-5 with ``autoApprove.enabled`` false (module docstring, "Auto-approval off"):
    pending, keeping the binding the steps would have established. A presented token that was
    not verified (a caller that skipped it) proves nothing and is recorded as before."""
    presented = facts.presented
    credential = presented.bootstrap is not None or any(o.applicable for o in facts.outcomes)
    if not credential:
        return _pending(
            Reason.MANUAL_APPROVAL_REQUIRED, Step.MANUAL, credential_digest=presented.primary
        )
    waiting = _pending(
        Reason.AUTO_APPROVE_DISABLED, Step.MANUAL, credential_digest=presented.primary
    )
    if presented.bootstrap is not None and facts.verification is None:
        return waiting
    would = _evaluate(facts, jti_owner, replace(policy, auto_approve=True))
    if would.outcome is Outcome.REJECTED:
        return waiting
    return replace(
        would,
        outcome=Outcome.PENDING,
        reason=Reason.AUTO_APPROVE_DISABLED,
        step=Step.MANUAL,
        effect=Effect.CREATE,
        security=False,
        approval_method=None,
        claim_jti=False,
        issue_key=False,
        credential_digest=would.credential_digest or presented.primary,
    )


def _bootstrap_step(facts: Facts, jti_owner: str | None, policy: DecisionPolicy) -> Decision:
    """Step 2, with a verified (or refused) bootstrap token."""
    verification = facts.verification
    credential = facts.presented.bootstrap
    digest = credential.digest if credential is not None else None
    if verification is None:
        raise ValueError("a presented bootstrap token must be verified before deciding")
    if isinstance(verification, TokenError):
        if verification.security_relevant:
            return Decision(
                Outcome.REJECTED, verification.reason, Step.BOOTSTRAP_TOKEN, security=True
            )
        return _pending(verification.reason, Step.BOOTSTRAP_TOKEN, credential_digest=digest)

    claims = verification
    pod_name = facts.pod_name
    # A token already bound to another agent is a copied token whoever presents it, before
    # any binding question: refused (403, security event), never a pending record.
    if jti_owner is not None and jti_owner != facts.request.agent_id:
        return Decision(
            Outcome.REJECTED,
            Reason.TOKEN_REUSED,
            Step.BOOTSTRAP_TOKEN,
            security=True,
            claims=claims,
            pod_name=pod_name,
        )
    if pod_name is None or not claims.pod.admits(pod_name):
        reason: str = Reason.BINDING_NOT_PROVABLE
    elif pod_namespace_mismatch(facts.request, namespace=claims.namespace):
        reason = Reason.NAMESPACE_MISMATCH
    else:
        reason = ""
    if reason:
        return _pending(
            reason, Step.BOOTSTRAP_TOKEN, claims=claims, pod_name=pod_name, credential_digest=digest
        )
    pod_uid: str | None = None
    if policy.kubernetes:
        evidence = facts.pod
        if evidence is None:
            raise ValueError("with Kubernetes access the live pod must be looked at first")
        pod_uid = evidence.uid
        if evidence.check is not PodCheck.OK:
            if evidence.check.security_relevant:
                return Decision(
                    Outcome.REJECTED,
                    evidence.check.value,
                    Step.BOOTSTRAP_TOKEN,
                    security=True,
                    claims=claims,
                    pod_name=pod_name,
                    pod_uid=pod_uid,
                )
            return _pending(
                evidence.check.value,
                Step.BOOTSTRAP_TOKEN,
                claims=claims,
                pod_name=pod_name,
                pod_uid=pod_uid,
                credential_digest=digest,
            )
    # The token binds the agent's pod now (and, with Kubernetes access, its live pod passed):
    # its owner is proven.
    proof = OwnerEvidence.LIVE_POD if policy.kubernetes else OwnerEvidence.TOKEN
    for check in policy.bootstrap_checks:
        refusal = check(
            claims=claims,
            agent_pod_name=pod_name,
            bound_pod_uid=pod_uid,
            outcomes=facts.outcomes,
        )
        if refusal is None:
            continue
        if refusal.security:
            return Decision(
                Outcome.REJECTED,
                refusal.reason,
                Step.BOOTSTRAP_TOKEN,
                security=True,
                claims=claims,
                pod_name=pod_name,
                pod_uid=pod_uid,
            )
        pending = _pending(
            refusal.reason,
            Step.BOOTSTRAP_TOKEN,
            claims=claims,
            pod_name=pod_name,
            pod_uid=pod_uid,
            credential_digest=digest,
        )
        return _with_owner(pending, claims.owner, proof, facts)
    approved = Decision(
        Outcome.APPROVED,
        Reason.BOOTSTRAP_TOKEN_ACCEPTED,
        Step.BOOTSTRAP_TOKEN,
        Effect.CREATE,
        approval_method=ApprovalMethod.NAMESPACE,
        claims=claims,
        pod_name=pod_name,
        pod_uid=pod_uid,
        claim_jti=jti_owner is None,
        issue_key=True,
        credential_digest=digest,
    )
    return _with_owner(approved, claims.owner, proof, facts)


def _outcome_step(outcome: CredentialOutcome, facts: Facts) -> Decision:
    """Steps 3 and 4: a verifier's outcome, with the binding checks the engine owns."""
    step = _VERDICT_STEP.get(outcome.approval_method, Step.MANUAL)
    pod_name = outcome.pod_name or facts.pod_name
    digest = facts.presented.digest_for(outcome.approval_method)
    if not outcome.accepted:
        if outcome.security:
            return Decision(
                Outcome.REJECTED, outcome.reason, step, security=True, outcome_used=outcome
            )
        reason = outcome.reason
    elif outcome.pod_name is not None and outcome.pod_name != facts.pod_name:
        reason = Reason.BINDING_NOT_PROVABLE
    elif outcome.namespace is not None and pod_namespace_mismatch(
        facts.request, namespace=outcome.namespace
    ):
        reason = Reason.NAMESPACE_MISMATCH
    else:
        approved = Decision(
            Outcome.APPROVED,
            outcome.reason,
            step,
            Effect.CREATE,
            approval_method=outcome.approval_method,
            pod_name=pod_name,
            pod_uid=outcome.pod_uid,
            outcome_used=outcome,
            issue_key=True,
            credential_digest=digest,
        )
        # The controller is read from the live pod the verified token named (its UID matched):
        # proven, once the pod is the agent's.
        controller = outcome.controller if outcome.pod_name is not None else None
        return _with_owner(approved, controller, OwnerEvidence.LIVE_POD, facts)
    return _pending(
        reason,
        step,
        pod_name=pod_name,
        pod_uid=outcome.pod_uid,
        outcome_used=outcome,
        credential_digest=digest,
    )


def _other_credential(existing: AgentRecord, fresh: Decision) -> Decision:
    """A known agent id with a credential other than the record's: only an approval counts."""
    if fresh.outcome is Outcome.REJECTED:
        return replace(fresh, effect=Effect.NONE)
    sticky = existing.status is AgentStatus.REJECTED or (
        existing.status is AgentStatus.INACTIVE and existing.reason != Reason.POD_DELETED
    )
    if sticky:
        return Decision(
            Outcome.REJECTED,
            existing.reason,
            fresh.step,
            claims=fresh.claims,
            pod_name=fresh.pod_name,
        )
    if fresh.outcome is Outcome.APPROVED and allowed(LifecycleEvent.REBIND, existing):
        same_pod = (fresh.claims is not None and fresh.claims.pod.name is not None) or (
            fresh.pod_uid is not None and fresh.pod_uid == existing.pod_uid
        )
        if existing.status is not AgentStatus.ACTIVE or same_pod:
            return replace(fresh, effect=Effect.REBIND)
    return Decision(
        Outcome.REJECTED,
        Reason.CREDENTIAL_MISMATCH,
        fresh.step,
        security=True,
        claims=fresh.claims,
        pod_name=fresh.pod_name,
    )
