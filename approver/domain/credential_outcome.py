"""What checking one registration credential (an API key, a service-account token) concluded. Pure.

The API-key path (:mod:`approver.api_keys`) and the service-account path
(:mod:`approver.service_accounts`) each answer the registrar with one :class:`CredentialOutcome`;
the decision engine turns it into the registration answer, the agent record's
``approval_method`` and an audit event. Nothing here does I/O, and nothing here can hold a
secret: an outcome names a key by its public id and a token by nothing at all (a
:func:`bootstrap_token.fingerprint` of it goes in ``credential``).

Suggested mapping to the registration answer (docs/design.md, "Decision, in order"), the same
rule the bootstrap token follows:

==================  =================  ====================================================
verdict             ``security``       answer
==================  =================  ====================================================
ACCEPTED            False              200 approved, ``approval_method`` from the outcome
REFUSED             True               403 rejected, security audit event (forged, guessed,
                                       revoked or misdirected credential)
REFUSED             False              202 pending with ``reason`` (honest credential that
                                       aged out, is out of scope, or could not be checked now)
NOT_APPLICABLE      False              this path does not decide; the next step does
==================  =================  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from approver.domain.records import ApprovalMethod
from bootstrap_token import OwnerRef


class Verdict(StrEnum):
    """Whether the credential approves the agent."""

    ACCEPTED = "accepted"  #: authentic, in scope: approve with ``approval_method``
    REFUSED = "refused"  #: presented but not good enough; ``reason`` says why
    NOT_APPLICABLE = "not_applicable"  #: the path is disabled, or no such credential was sent


@dataclass(frozen=True, slots=True)
class CredentialOutcome:
    """The result of one credential check.

    Attributes:
        verdict: see :class:`Verdict`.
        approval_method: ``api_key`` or ``service_account``: the path that produced the outcome
            (recorded as the agent's ``approval_method`` when accepted).
        reason: a stable snake_case reason code (tables in :mod:`approver.api_keys.reasons` and
            :mod:`approver.service_accounts.reasons`).
        security: True when the refusal means a forged, guessed, revoked or misdirected
            credential (403 and a security audit event), False otherwise.
        authenticated: True when the credential itself proved authentic (a key whose secret
            matched; a token the API server or the issuer's JWKS vouched for, pod-bound), even if
            a scope or an allow-list then refused it. Only then are the identity fields below
            facts rather than claims; :func:`approver.service_accounts.check_pod_binding`
            requires it.
        message: a human detail for the audit event; never contains the credential.
        credential: :func:`bootstrap_token.fingerprint` of the presented credential, for the
            audit event (``sha256:<12 hex>``), or None when nothing was presented.
        key_id: API keys: the key's public id (the ``<id>`` of ``abk_<id>_<secret>``), once
            parsed; None otherwise.
        key_name: API keys: the key's name, once the key was found.
        key_source: API keys: ``api`` (stored in the database) or ``secret`` (a mounted Secret
            file); None before the key was found.
        namespace: service-account tokens: the pod's namespace.
        service_account: service-account tokens: the service account's name.
        service_account_uid: the service account's UID.
        pod_name: the pod the token is bound to.
        pod_uid: that pod's UID.
        node_name: the node the pod runs on, when the token says (Kubernetes 1.30+).
        controller: the live pod's controller (``ownerReferences`` entry with
            ``controller: true``), read from the Kubernetes API after the token was verified and
            its pod UID matched the live pod's; None when the pod was not read or has none.
    """

    verdict: Verdict
    approval_method: ApprovalMethod
    reason: str
    security: bool = False
    authenticated: bool = False
    message: str | None = None
    credential: str | None = None
    key_id: str | None = None
    key_name: str | None = None
    key_source: str | None = None
    namespace: str | None = None
    service_account: str | None = None
    service_account_uid: str | None = None
    pod_name: str | None = None
    pod_uid: str | None = None
    node_name: str | None = None
    controller: OwnerRef | None = None

    @property
    def accepted(self) -> bool:
        """True when the verdict is ACCEPTED."""
        return self.verdict is Verdict.ACCEPTED

    @property
    def refused(self) -> bool:
        """True when the verdict is REFUSED."""
        return self.verdict is Verdict.REFUSED

    @property
    def applicable(self) -> bool:
        """False when the path did not look at anything (disabled, or nothing presented)."""
        return self.verdict is not Verdict.NOT_APPLICABLE

    @property
    def service_account_pair(self) -> str | None:
        """``namespace:serviceaccount``, when both are known."""
        if self.namespace is None or self.service_account is None:
            return None
        return f"{self.namespace}:{self.service_account}"
