"""The registration decision engine: pure rules, no I/O (DESIGN, "Decision, in order").

:func:`decide` takes what the request presented, the outcome of verifying its bootstrap token and
the store's view (the agent's record, who burnt the token's ``jti``) and returns a
:class:`Decision`: the answer (200/202/403), a stable reason code, the approval method, and what
the store must write. The caller verifies the token *before* reading the store (verification is
CPU only, and the ``jti`` it yields is what the store is asked about) and re-runs :func:`decide`
with a fresh view when the database refuses a write (a ``jti`` burnt concurrently).

Order:

1. **Known agent, same credential** (same SHA-256 of the presented token, or no token both
   times): the answer the record holds now, so a retry is idempotent and cheap, and an
   administrator's approve or reject made meanwhile is what the agent hears.
2. **Bootstrap token** (when ``autoApprove.enabled``): verified with the current key set and the
   current trust policy. Security-relevant failures are refused (403); an honest token that
   aged out or lost trust waits (202). Then the binding: the agent's pod name (``metadata.podName``,
   else the agent id minus ``agentIdPrefix-``) must be admitted by the token's ``pod`` claim, and
   ``metadata.namespace``, when sent, must equal the token's namespace. Then the ``jti``: unused,
   or used by this same agent, approves (``active``, ``approval_method=namespace``); used by
   another agent is a copied token (403).
3. Otherwise **pending**, for an administrator.

A request for a *known* agent id with a *different* credential may change the record only by
passing step 2 (a token bound to this agent re-binds it, e.g. a StatefulSet pod recreated under
the same name); any other outcome leaves the record alone and is refused, so nobody can downgrade
or take over an agent by knowing its id. An *active* agent is re-bound only by a token naming its
exact pod (``pod.name``): a ``generateName`` token admits every pod of its ReplicaSet, and a
generated name is never reused, so a second such token for an active agent is a sibling pod's
token, not a recreated pod's. An administrator's reject is sticky.

Reason codes (stable, snake_case; in answers, agent records and audit events):

=============================  ======  ==========================================================
reason                         answer  meaning
=============================  ======  ==========================================================
bootstrap_token_accepted       200     token verified, trusted now, bound to this agent, ``jti``
                                       burnt by this agent (now or on an earlier attempt)
approved_by_admin              200     an administrator approved the agent (admin API)
auto_approve_disabled          202     a token was presented but ``autoApprove.enabled`` is false
manual_approval_required       202     no bootstrap token: an administrator decides
expired                        202     token ``exp`` has passed (leeway included)
not_yet_valid                  202     token ``nbf`` lies in the future (leeway included)
namespace_not_trusted          202     the token's namespace is not in ``trust.namespaces`` now
service_account_not_allowed    202     the token's service account is not in
                                       ``trust.serviceAccounts`` now
binding_not_provable           202     no pod name could be derived from the agent, or the
                                       token's ``pod`` claim does not admit it
namespace_mismatch             202     ``metadata.namespace`` differs from the token's namespace
malformed                      403*    not a compact JWS of the documented shape
bad_alg                        403*    ``alg`` is not ``EdDSA`` (``none``, HS256, ...)
unknown_kid                    403*    ``kid`` names no key of the current key set
bad_signature                  403*    the Ed25519 signature does not verify
wrong_issuer                   403*    ``iss`` is not ``token.issuer``
wrong_audience                 403*    ``aud`` is not ``token.audience``
ttl_too_long                   403*    ``exp - iat`` beyond the 24 h maximum
invalid_token                  403*    any other token failure
token_reused                   403*    the ``jti`` is already bound to another agent (a copy)
credential_mismatch            403*    the agent id is registered with another credential, and
                                       this request did not prove a right to it
rejected_by_admin              403     an administrator rejected the agent
agent_inactive                 403     the agent was deactivated (pod gone, revoked)
=============================  ======  ==========================================================

``*``: security-relevant, the audit event has ``security: true``. 202 creates a ``pending``
record for an unknown agent; a 403 never creates one (an id refused for a bad token stays free
for the real pod).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from approver.records import AgentRecord, AgentStatus, ApprovalMethod
from approver.wire import RegistrationRequest
from bootstrap_token import BootstrapClaims, TokenError


class Reason(StrEnum):
    """The approver's own reason codes (token failures use :attr:`TokenError.reason`)."""

    BOOTSTRAP_TOKEN_ACCEPTED = "bootstrap_token_accepted"  # noqa: S105 - a reason code
    APPROVED_BY_ADMIN = "approved_by_admin"
    AUTO_APPROVE_DISABLED = "auto_approve_disabled"
    MANUAL_APPROVAL_REQUIRED = "manual_approval_required"
    BINDING_NOT_PROVABLE = "binding_not_provable"
    NAMESPACE_MISMATCH = "namespace_mismatch"
    TOKEN_REUSED = "token_reused"  # noqa: S105 - a reason code
    CREDENTIAL_MISMATCH = "credential_mismatch"
    REJECTED_BY_ADMIN = "rejected_by_admin"
    AGENT_INACTIVE = "agent_inactive"


#: ``approved_by`` of an agent approved by its bootstrap token.
TOKEN_APPROVER = "bootstrap-token"  # noqa: S105 - an actor name


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
    MANUAL = "manual"


class Effect(StrEnum):
    """What the store must write for a decision, in the decision's transaction."""

    NONE = "none"  #: answer only; no row changes
    CREATE = "create"  #: insert a new agent record
    REBIND = "rebind"  #: the existing record takes this credential and binding, and is activated


@dataclass(frozen=True, slots=True)
class DecisionPolicy:
    """The settings the rules read.

    Attributes:
        auto_approve: ``autoApprove.enabled``; False makes every agent pending (the old way).
        agent_id_prefix: ``agentIdPrefix``; StreamSpace builds ``AGENT_ID=$(AGENT_ID_PREFIX)-
            $(POD_NAME)``, so the pod name is the agent id minus ``prefix + "-"``. None: the agent
            id is the pod name.
    """

    auto_approve: bool
    agent_id_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class StoreView:
    """What the store knows, read in the decision's transaction.

    Attributes:
        agent: the record with the request's agent id, or None.
        jti_owner: the agent id that burnt the token's ``jti``, or None (also when no token
            was verified).
    """

    agent: AgentRecord | None = None
    jti_owner: str | None = None


#: The outcome of verifying the presented token: its claims, the typed failure, or None when
#: nothing was verified (no token, or ``autoApprove`` disabled).
Verification = BootstrapClaims | TokenError | None


@dataclass(frozen=True, slots=True)
class Decision:
    """One registration decision.

    Attributes:
        outcome: approved / pending / rejected.
        reason: a reason code from the module's table.
        step: which rule decided.
        effect: what to write.
        security: True when the audit event must be security-relevant.
        approval_method: set when approved.
        claims: the verified token's claims, when a token verified (context for the record
            and the audit event, whatever the outcome).
        pod_name: the pod name the agent was bound to (or checked against), when derived.
        claim_jti: True when the store must burn ``claims.jti`` for this agent (an atomic
            insert that fails if another agent burnt it first).
    """

    outcome: Outcome
    reason: str
    step: Step
    effect: Effect = Effect.NONE
    security: bool = False
    approval_method: ApprovalMethod | None = None
    claims: BootstrapClaims | None = None
    pod_name: str | None = None
    claim_jti: bool = False

    @property
    def http_status(self) -> int:
        """200 approved, 202 pending, 403 rejected."""
        return self.outcome.http_status

    @property
    def agent_status(self) -> AgentStatus:
        """The status a record written by this decision gets."""
        return AgentStatus.ACTIVE if self.outcome is Outcome.APPROVED else AgentStatus.PENDING


def decide(
    *,
    request: RegistrationRequest,
    credential_hash: str | None,
    verification: Verification,
    view: StoreView,
    policy: DecisionPolicy,
) -> Decision:
    """Decide a registration (rules and reason codes in the module docstring).

    Args:
        request: the validated registration body.
        credential_hash: SHA-256 hex of the presented bootstrap token, or None when the request
            presented none.
        verification: :data:`Verification`. Must not be None when a token was presented and
            ``policy.auto_approve`` is set.
        view: the store's view, read in the same transaction the decision's writes go into.
        policy: the rules' settings.

    Returns:
        The decision. Pure: the same arguments give the same decision.

    Raises:
        ValueError: a token was presented with auto-approval on, but ``verification`` is None
            (a caller bug: the token must be verified first).
    """
    existing = view.agent
    if existing is not None and existing.credential_hash == credential_hash:
        return _known_agent(existing)
    fresh = _evaluate(
        request=request,
        token_presented=credential_hash is not None,
        verification=verification,
        jti_owner=view.jti_owner,
        policy=policy,
    )
    if existing is None:
        return fresh
    return _other_credential(existing, fresh)


def bound_pod_name(request: RegistrationRequest, *, agent_id_prefix: str | None) -> str | None:
    """The pod name a registration speaks for, or None when it cannot be told.

    ``metadata.podName`` when sent (it must be a non-empty string); else the agent id without
    ``agent_id_prefix + "-"`` (StreamSpace: ``AGENT_ID=$(AGENT_ID_PREFIX)-$(POD_NAME)``); with no
    prefix configured, the agent id itself.
    """
    raw = request.metadata.get("podName")
    if raw is not None:
        return raw if isinstance(raw, str) and raw else None
    if agent_id_prefix is None:
        return request.agent_id
    head = agent_id_prefix + "-"
    if request.agent_id.startswith(head) and len(request.agent_id) > len(head):
        return request.agent_id[len(head) :]
    return None


def _known_agent(existing: AgentRecord) -> Decision:
    """Step 1: the answer the record holds now."""
    match existing.status:
        case AgentStatus.ACTIVE:
            return Decision(
                Outcome.APPROVED,
                existing.reason,
                Step.KNOWN_AGENT,
                approval_method=existing.approval_method,
            )
        case AgentStatus.PENDING:
            return Decision(Outcome.PENDING, existing.reason, Step.KNOWN_AGENT)
        case AgentStatus.REJECTED:
            return Decision(Outcome.REJECTED, existing.reason, Step.KNOWN_AGENT)
        case AgentStatus.INACTIVE:
            return Decision(Outcome.REJECTED, Reason.AGENT_INACTIVE, Step.KNOWN_AGENT)


def _evaluate(
    *,
    request: RegistrationRequest,
    token_presented: bool,
    verification: Verification,
    jti_owner: str | None,
    policy: DecisionPolicy,
) -> Decision:
    """Steps 2 and 3 for a request on its own merits (as if the agent were unknown)."""
    if not token_presented:
        return Decision(
            Outcome.PENDING, Reason.MANUAL_APPROVAL_REQUIRED, Step.MANUAL, Effect.CREATE
        )
    if not policy.auto_approve:
        return Decision(Outcome.PENDING, Reason.AUTO_APPROVE_DISABLED, Step.MANUAL, Effect.CREATE)
    if verification is None:
        raise ValueError("a presented bootstrap token must be verified before deciding")
    if isinstance(verification, TokenError):
        if verification.security_relevant:
            return Decision(
                Outcome.REJECTED, verification.reason, Step.BOOTSTRAP_TOKEN, security=True
            )
        return Decision(Outcome.PENDING, verification.reason, Step.BOOTSTRAP_TOKEN, Effect.CREATE)

    claims = verification
    pod_name = bound_pod_name(request, agent_id_prefix=policy.agent_id_prefix)
    waiting = Decision(
        Outcome.PENDING,
        Reason.BINDING_NOT_PROVABLE,
        Step.BOOTSTRAP_TOKEN,
        Effect.CREATE,
        claims=claims,
        pod_name=pod_name,
    )
    if pod_name is None or not claims.pod.admits(pod_name):
        return waiting
    namespace = request.metadata.get("namespace")
    if namespace is not None and namespace != claims.namespace:
        return replace(waiting, reason=Reason.NAMESPACE_MISMATCH)
    if jti_owner is not None and jti_owner != request.agent_id:
        return Decision(
            Outcome.REJECTED,
            Reason.TOKEN_REUSED,
            Step.BOOTSTRAP_TOKEN,
            security=True,
            claims=claims,
            pod_name=pod_name,
        )
    return Decision(
        Outcome.APPROVED,
        Reason.BOOTSTRAP_TOKEN_ACCEPTED,
        Step.BOOTSTRAP_TOKEN,
        Effect.CREATE,
        approval_method=ApprovalMethod.NAMESPACE,
        claims=claims,
        pod_name=pod_name,
        claim_jti=jti_owner is None,
    )


def _other_credential(existing: AgentRecord, fresh: Decision) -> Decision:
    """A known agent id with a credential other than the record's: only a bound token counts."""
    if fresh.outcome is Outcome.REJECTED:
        return fresh
    if existing.status is AgentStatus.REJECTED:
        return Decision(
            Outcome.REJECTED,
            existing.reason,
            fresh.step,
            claims=fresh.claims,
            pod_name=fresh.pod_name,
        )
    named_pod = fresh.claims is not None and fresh.claims.pod.name is not None
    if fresh.outcome is Outcome.APPROVED and (
        existing.status is not AgentStatus.ACTIVE or named_pod
    ):
        return replace(fresh, effect=Effect.REBIND)
    return Decision(
        Outcome.REJECTED,
        Reason.CREDENTIAL_MISMATCH,
        fresh.step,
        security=True,
        claims=fresh.claims,
        pod_name=fresh.pod_name,
    )
