"""The stamping policy: whether a Pod CREATE gets a bootstrap token, as a pure function.

Rules (DESIGN.md, "Webhook behaviour"), checked in this order:

===============================================  ================  ==============================
case                                             decision          reason
===============================================  ================  ==============================
not a CREATE of a core/v1 Pod                    not_applicable    ``not_pod_create``
pod does not match the trust policy's selector   skipped/stripped  ``not_agent_pod``
``request.namespace`` not trusted                skipped/stripped  ``namespace_not_trusted``
service account not in the allow-list            skipped/stripped  ``service_account_not_allowed``
trusted agent pod, no signing key                no_signing_key    ``signing_key_unavailable``
trusted agent pod                                stamped           ``trusted_agent_pod``
===============================================  ================  ==============================

``stripped`` is ``skipped`` for a pod that came with our annotation: the patch removes it, so a
pod cannot carry a token value the webhook did not mint for it (annotations are writable by
anyone who may create pods). For the same reason a trusted pod is stamped *over* any pre-set
value, and a pre-set value is removed when no signing key is available.

The namespace is ``request.namespace`` only: the API server resolved it, while
``object.metadata.namespace`` is left empty by controllers and is whatever the client wrote.
No I/O and no clock here: the key and ``now`` are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from bootstrap_token import (
    BootstrapClaims,
    OwnerRef,
    PodRef,
    SigningKey,
    TrustPolicy,
    mint,
    new_jti,
)
from webhook.patch import PatchOp, has_annotation, remove_annotation, set_annotation
from webhook.review import AdmissionRequest, MalformedReview, parse_pod

#: Prefix of every warning, so users see which webhook spoke (kubectl prints them as is).
WARNING_PREFIX = "agent-bootstrap: "

_WHY = {
    "not_agent_pod": "pod does not match the agent selector",
    "namespace_not_trusted": "namespace is not trusted",
    "service_account_not_allowed": "service account is not allowed",
}


class Outcome(StrEnum):
    """What the webhook did with a review (also the ``decision`` audit annotation)."""

    STAMPED = "stamped"
    SKIPPED = "skipped"
    STRIPPED = "stripped"
    NOT_APPLICABLE = "not_applicable"
    NO_SIGNING_KEY = "no_signing_key"


@dataclass(frozen=True, slots=True)
class StampConfig:
    """The stamping parameters, built once from the settings.

    Attributes:
        trust: which namespaces, service accounts and pods are trusted.
        annotation_key: the annotation that carries the token.
        issuer: ``iss`` claim.
        audience: ``aud`` claim.
        cluster: ``cluster`` claim.
        ttl_seconds: ``exp - iat`` in seconds (5 min .. 24 h, enforced by the settings and by
            :func:`bootstrap_token.mint`).
    """

    trust: TrustPolicy
    annotation_key: str
    issuer: str
    audience: str
    cluster: str
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a Pod CREATE is about, for audit.

    Attributes:
        namespace: ``request.namespace``.
        pod: ``metadata.name`` or, failing that, ``metadata.generateName``.
        service_account: ``spec.serviceAccountName`` or ``default``.
    """

    namespace: str
    pod: str
    service_account: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one review, before it is put on the wire.

    Attributes:
        decision: the outcome.
        reason: stable snake_case reason code (see the module docstring).
        patch: RFC 6902 operations; empty for no patch. Holds the token when stamped, so it is
            kept out of ``repr``: never log it.
        warnings: short messages for the client (Kubernetes shows them to ``kubectl`` users).
        claims: the claims minted, when stamped (``jti`` for audit and auditAnnotations).
        kid: the ``kid`` of the signing key, when stamped.
        subject: the pod the decision is about; None when not a Pod CREATE.
    """

    decision: Outcome
    reason: str
    patch: list[PatchOp] = field(default_factory=list, repr=False)
    warnings: list[str] = field(default_factory=list)
    claims: BootstrapClaims | None = None
    kid: str | None = None
    subject: Subject | None = None


def decide(
    request: AdmissionRequest,
    *,
    config: StampConfig,
    signing_key: SigningKey | None,
    now: int,
) -> Decision:
    """Decide whether to stamp the pod of ``request``, and build the patch.

    Args:
        request: the parsed ``request`` of the AdmissionReview.
        config: stamping parameters and trust policy.
        signing_key: the active Ed25519 key, or None when it is unavailable.
        now: seconds since the epoch; becomes ``iat`` and ``nbf``, ``exp = now + ttl``.

    Returns:
        The :class:`Decision`; see the module docstring for the table.

    Raises:
        MalformedReview: a Pod CREATE without a usable ``object``, or with neither
            ``metadata.name`` nor ``metadata.generateName`` (reason ``malformed_pod``).
        ValueError, pydantic.ValidationError: claims that :func:`bootstrap_token.mint` refuses
            (a TTL outside the bounds); the settings prevent this.
    """
    if not request.is_pod_create:
        return Decision(decision=Outcome.NOT_APPLICABLE, reason="not_pod_create")
    obj = request.object
    if obj is None:
        raise MalformedReview("malformed_pod", "Pod CREATE without request.object")
    pod = parse_pod(obj)
    namespace = request.namespace or ""
    service_account = pod.spec.service_account_name or "default"
    pod_name = pod.metadata.name or pod.metadata.generate_name
    if not pod_name:
        # The API server refuses such a pod after admission anyway (ObjectMeta validation).
        raise MalformedReview("malformed_pod", "pod has neither metadata.name nor generateName")
    key = config.annotation_key
    subject = Subject(namespace=namespace, pod=pod_name, service_account=service_account)

    reason = (
        "not_agent_pod"
        if not config.trust.selects(pod.metadata.labels)
        else config.trust.untrusted_reason(namespace, service_account)
    )
    if reason is not None:
        strip = remove_annotation(obj, key=key)
        if not strip:
            return Decision(decision=Outcome.SKIPPED, reason=reason, subject=subject)
        return Decision(
            decision=Outcome.STRIPPED,
            reason=reason,
            patch=strip,
            warnings=[f"{WARNING_PREFIX}removed annotation {key}: {_WHY[reason]}"],
            subject=subject,
        )

    if signing_key is None:
        return Decision(
            decision=Outcome.NO_SIGNING_KEY,
            reason="signing_key_unavailable",
            patch=remove_annotation(obj, key=key),
            warnings=[f"{WARNING_PREFIX}no signing key; pod not stamped, needs manual approval"],
            subject=subject,
        )

    owner = pod.controller
    claims = BootstrapClaims(
        iss=config.issuer,
        aud=config.audience,
        iat=now,
        nbf=now,
        exp=now + config.ttl_seconds,
        jti=new_jti(),
        cluster=config.cluster,
        namespace=namespace,
        service_account=service_account,
        pod=PodRef(name=pod.metadata.name)
        if pod.metadata.name
        else PodRef(generate_name=pod.metadata.generate_name),
        owner=OwnerRef(kind=owner.kind, name=owner.name, uid=owner.uid) if owner else None,
        admission_uid=request.uid,
    )
    token = mint(claims, signing_key, now=now)
    warnings = (
        [f"{WARNING_PREFIX}replaced the pre-set {key} annotation with a fresh token"]
        if has_annotation(obj, key=key)
        else []
    )
    return Decision(
        decision=Outcome.STAMPED,
        reason="trusted_agent_pod",
        patch=set_annotation(obj, key=key, value=token),
        warnings=warnings,
        claims=claims,
        kid=signing_key.kid,
        subject=subject,
    )
