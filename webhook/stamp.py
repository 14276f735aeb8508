"""The stamping policy: whether a Pod CREATE gets a bootstrap token, as a pure function.

Rules (docs/design.md, "Webhook behaviour"), checked in this order:

===============================================  ================  ==============================
case                                             decision          reason
===============================================  ================  ==============================
not a CREATE of a core/v1 Pod                    not_applicable    ``not_pod_create``
pod does not match the trust policy's selector   skipped/stripped  ``not_agent_pod``
``request.namespace`` not trusted                skipped/stripped  ``namespace_not_trusted``
service account not in the allow-list            skipped/stripped  ``service_account_not_allowed``
trusted agent pod, no signing key                no_signing_key    ``signing_key_unavailable``
the stamp would take the pod's annotations       over_limit        ``annotations_over_limit``
over 256 KiB
the stamp would take the pod over 1.5 MiB        over_limit        ``object_over_limit``
trusted agent pod                                stamped           ``trusted_agent_pod``
===============================================  ================  ==============================

``over_limit``: the webhook never makes an admissible pod inadmissible. The API server refuses
a pod whose annotations total more than 256 KiB (keys plus values, in bytes;
``TotalAnnotationSizeLimitB``, k8s.io/apimachinery ``ValidateAnnotationsSize``) and cannot store
an object over etcd's request limit (1.5 MiB by default: "etcdserver: request is too large").
When the token (and the injected env var) would cross either, the pod is admitted without them,
a pre-set annotation still removed (which only shrinks it), with a warning, its decision and
reason in the metric, the audit line and ``auditAnnotations``; its agent waits for manual
approval. The object is measured as compact JSON without escapes, which is no smaller than what
the API server stores (protobuf), so the check errs towards leaving a pod unstamped.

``stripped`` is ``skipped`` for a pod that came with our annotation: the patch removes it, so a
pod cannot carry a token value the webhook did not mint for it (annotations are writable by
anyone who may create pods). For the same reason a trusted pod is stamped *over* any pre-set
value, and a pre-set value is removed when no signing key is available.

A stamped pod's patch sets the annotation and, with ``injectEnv``, points the named containers'
env var at it (:mod:`webhook.inject`); with ``agentProxy``, a pod that opts in also gets the agent
proxy sidecar (:mod:`webhook.sidecar`). ``dryRun`` changes nothing here: the API server expects
the same answer, and the audit event records it.

The namespace is ``request.namespace`` only: the API server resolved it, while
``object.metadata.namespace`` is left empty by controllers and is whatever the client wrote.
No I/O and no clock here: the signer and ``now`` are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bootstrap_token import MAX_TTL_SECONDS, MIN_TTL_SECONDS, TrustPolicy
from bootstrap_token.jsonio import dumps
from webhook.errors import MalformedReview
from webhook.inject import EnvInjection, env_var, set_envs
from webhook.jti import new_jti
from webhook.patch import PatchOp, has_annotation, remove_annotation, set_annotation
from webhook.review import AdmissionRequest, PodView, parse_pod
from webhook.sidecar import ProxyInjection, inject_proxy, url_entry
from webhook.signer import TokenSigner

#: Prefix of every warning, so users see which webhook spoke (kubectl prints them as is).
WARNING_PREFIX = "agent-bootstrap: "

#: Kubernetes truncates longer warnings ("Dynamic Admission Control", "Response": "Individual
#: warning messages over 120 characters may be truncated").
MAX_WARNING_CHARS = 120

_WHY = {
    "not_agent_pod": "pod does not match the agent selector",
    "namespace_not_trusted": "namespace is not trusted",
    "service_account_not_allowed": "service account is not allowed",
}

WARN_STRIPPED = WARNING_PREFIX + "removed the bootstrap token the pod came with: {why}"
WARN_REPLACED = WARNING_PREFIX + "replaced the bootstrap token the pod came with"
WARN_NO_KEY = WARNING_PREFIX + "no signing key loaded; pod not stamped, needs manual approval"
WARN_OVER_LIMIT = (
    WARNING_PREFIX + "not stamped: the token would take the pod over {limit}; needs manual approval"
)

#: The API server's limit on a pod's annotations, keys plus values in bytes
#: (k8s.io/apimachinery/pkg/api/validation: ``TotalAnnotationSizeLimitB``).
MAX_ANNOTATIONS_BYTES = 256 * 1024
#: etcd's default ``--max-request-bytes``: the largest object the API server can store.
MAX_OBJECT_BYTES = 1536 * 1024


class Outcome(StrEnum):
    """What the webhook did with a review (also the ``decision`` audit annotation)."""

    STAMPED = "stamped"
    SKIPPED = "skipped"
    STRIPPED = "stripped"
    NOT_APPLICABLE = "not_applicable"
    NO_SIGNING_KEY = "no_signing_key"
    OVER_LIMIT = "over_limit"


@dataclass(frozen=True, slots=True)
class StampConfig:
    """The stamping parameters, built once from the settings.

    Attributes:
        trust: which namespaces, service accounts and pods are trusted.
        annotation_key: the annotation that carries the token.
        issuer: ``iss`` claim.
        audience: ``aud`` claim.
        cluster: ``cluster`` claim.
        ttl_seconds: ``exp - iat`` in seconds, 300..86400 (docs/design.md, "The bootstrap token").
        inject_env: env injection into named containers, or None (off).
        proxy: the agent proxy sidecar for pods that opt in (:mod:`webhook.sidecar`), or None
            (off).

    Raises:
        ValueError: ``ttl_seconds`` outside the bounds, or an empty issuer/audience/cluster.
    """

    trust: TrustPolicy
    annotation_key: str
    issuer: str
    audience: str
    cluster: str
    ttl_seconds: int
    inject_env: EnvInjection | None = None
    proxy: ProxyInjection | None = None

    def __post_init__(self) -> None:
        if not MIN_TTL_SECONDS <= self.ttl_seconds <= MAX_TTL_SECONDS:
            raise ValueError(f"ttl_seconds must be within {MIN_TTL_SECONDS}..{MAX_TTL_SECONDS}")
        if not (self.issuer and self.audience and self.cluster and self.annotation_key):
            raise ValueError("issuer, audience, cluster and annotation_key must not be empty")


# Subject and Decision are made once per review: ``slots`` but not ``frozen`` (a frozen
# dataclass's __init__ is 2.5x slower, see webhook.review); nothing changes them after.
@dataclass(slots=True)
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


@dataclass(slots=True)
class Decision:
    """The answer to one review, before it is put on the wire.

    Attributes:
        decision: the outcome.
        reason: stable snake_case reason code (see the module docstring).
        patch: RFC 6902 operations; empty for no patch. Holds the token when stamped, so it is
            kept out of ``repr``: never log it.
        warnings: short messages for the client, each at most 120 characters.
        jti: the minted token's ``jti``, when stamped.
        kid: the ``kid`` of the signing key, when stamped.
        subject: the pod the decision is about; None when not a Pod CREATE.
    """

    decision: Outcome
    reason: str
    patch: list[PatchOp] = field(default_factory=list, repr=False)
    warnings: list[str] = field(default_factory=list)
    jti: str | None = None
    kid: str | None = None
    subject: Subject | None = None


def _bounded(value: str, field_name: str, limit: int) -> str:
    # The bounds of BootstrapClaims (bootstrap_token.claims), checked here because the hot path
    # builds the payload without the model; a value outside them would make a token the
    # approver refuses as malformed, so it is a malformed pod instead.
    if not 0 < len(value) <= limit:
        raise MalformedReview("malformed_pod", f"{field_name} is empty or too long for a token")
    return value


def claims_payload(
    *,
    config: StampConfig,
    request: AdmissionRequest,
    pod: PodView,
    subject: Subject,
    jti: str,
    now: int,
) -> dict[str, Any]:
    """The claims set of a stamped pod, exactly as :meth:`BootstrapClaims.to_payload` orders it.

    Shape: docs/design.md, "The bootstrap token" (``iss, aud, iat, nbf, exp, jti, cluster,
    namespace, serviceAccount, pod, owner?, admissionUid``; times in seconds since the epoch).

    Raises:
        MalformedReview: reason ``malformed_pod`` when the namespace (1..63), service account or
            pod name (1..253 characters) are outside the claims' bounds.
    """
    payload: dict[str, Any] = {
        "iss": config.issuer,
        "aud": config.audience,
        "iat": now,
        "nbf": now,
        "exp": now + config.ttl_seconds,
        "jti": jti,
        "cluster": config.cluster,
        "namespace": _bounded(subject.namespace, "request.namespace", 63),
        "serviceAccount": _bounded(subject.service_account, "spec.serviceAccountName", 253),
        "pod": {"name": _bounded(pod.name, "metadata.name", 253)}
        if pod.name
        else {"generateName": _bounded(subject.pod, "metadata.generateName", 253)},
    }
    owner = pod.controller
    if owner is not None:
        payload["owner"] = {"kind": owner.kind, "name": owner.name, "uid": owner.uid}
    payload["admissionUid"] = request.uid
    return payload


def _annotations_bytes(obj: dict[str, Any], *, without: str) -> int:
    """Bytes of the pod's annotations, keys plus values, as the API server counts them (UTF-8),
    leaving out ``without`` (the annotation the stamp replaces)."""
    annotations = obj.get("metadata", {}).get("annotations")
    if not isinstance(annotations, dict):
        return 0
    return sum(
        len(k.encode()) + (len(v.encode()) if isinstance(v, str) else len(dumps(v)))
        for k, v in annotations.items()
        if k != without
    )


def _limit_crossed(
    obj: dict[str, Any], patch: list[PatchOp], *, key: str, token: str, review_bytes: int | None
) -> str | None:
    """The reason code of the API-server limit the stamped pod would cross, or None."""
    if (
        _annotations_bytes(obj, without=key) + len(key.encode()) + len(token)
        > MAX_ANNOTATIONS_BYTES
    ):
        return "annotations_over_limit"
    # What the patch adds, as JSON: each value plus its member name or array slot (generous).
    growth = sum(len(dumps(op["value"])) + len(op["path"]) for op in patch if "value" in op)
    if review_bytes is not None and review_bytes + growth <= MAX_OBJECT_BYTES:
        return None  # the object is part of the review: no need to measure it
    if len(dumps(obj)) + growth > MAX_OBJECT_BYTES:
        return "object_over_limit"
    return None


def decide(
    request: AdmissionRequest,
    *,
    config: StampConfig,
    signer: TokenSigner | None,
    now: int,
    review_bytes: int | None = None,
) -> Decision:
    """Decide whether to stamp the pod of ``request``, and build the patch.

    Args:
        request: the parsed ``request`` of the AdmissionReview.
        config: stamping parameters and trust policy.
        signer: signs with the active Ed25519 key, or None when no key is loaded.
        now: seconds since the epoch; becomes ``iat`` and ``nbf``, ``exp = now + ttl``.
        review_bytes: the size of the AdmissionReview's body, an upper bound on the object's;
            when it leaves room for the patch, the object is not measured (None: measure it).

    Returns:
        The :class:`Decision`; see the module docstring for the table.

    Raises:
        MalformedReview: reason ``malformed_pod``: a Pod CREATE without a usable ``object``,
            with neither ``metadata.name`` nor ``metadata.generateName``, with a read field of
            the wrong type, or with values outside the claims' bounds.
    """
    if not request.is_pod_create:
        return Decision(decision=Outcome.NOT_APPLICABLE, reason="not_pod_create")
    obj = request.object
    if obj is None:
        raise MalformedReview("malformed_pod", "Pod CREATE without request.object")
    pod = parse_pod(obj)
    namespace = request.namespace or ""
    service_account = pod.service_account_name or "default"
    pod_name = pod.name or pod.generate_name
    if not pod_name:
        # The API server refuses such a pod after admission anyway (ObjectMeta validation).
        raise MalformedReview("malformed_pod", "pod has neither metadata.name nor generateName")
    key = config.annotation_key
    subject = Subject(namespace=namespace, pod=pod_name, service_account=service_account)

    reason = (
        "not_agent_pod"
        if not config.trust.selects(pod.labels)
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
            warnings=[WARN_STRIPPED.format(why=_WHY[reason])],
            subject=subject,
        )

    if signer is None:
        return Decision(
            decision=Outcome.NO_SIGNING_KEY,
            reason="signing_key_unavailable",
            patch=remove_annotation(obj, key=key),
            warnings=[WARN_NO_KEY],
            subject=subject,
        )

    # Everything that can refuse the pod runs before the (comparatively costly) signature.
    # Env changes (the token, the proxy URL) are computed together against the pod as sent and
    # come before the sidecar's operations, which move the init containers' indices.
    assignments: list[tuple[frozenset[str], dict[str, Any]]] = []
    if config.inject_env is not None:
        assignments.append(
            (
                config.inject_env.containers,
                env_var(variable=config.inject_env.variable, annotation_key=key),
            )
        )
    proxy_ops = inject_proxy(obj, config.proxy) if config.proxy is not None else []
    if proxy_ops and config.proxy is not None:
        assignments.append((config.proxy.containers, url_entry(config.proxy)))
    env_ops = set_envs(obj, assignments) if assignments else []
    env_ops.extend(proxy_ops)
    jti = new_jti()
    payload = claims_payload(
        config=config, request=request, pod=pod, subject=subject, jti=jti, now=now
    )
    token = signer.sign(payload)
    patch = set_annotation(obj, key=key, value=token)
    patch.extend(env_ops)
    crossed = _limit_crossed(obj, patch, key=key, token=token, review_bytes=review_bytes)
    if crossed is not None:
        limit = "256 KiB of annotations" if crossed == "annotations_over_limit" else "1.5 MiB"
        return Decision(
            decision=Outcome.OVER_LIMIT,
            reason=crossed,
            patch=remove_annotation(obj, key=key),
            warnings=[WARN_OVER_LIMIT.format(limit=limit)],
            subject=subject,
        )
    return Decision(
        decision=Outcome.STAMPED,
        reason="trusted_agent_pod",
        patch=patch,
        warnings=[WARN_REPLACED] if has_annotation(obj, key=key) else [],
        jti=jti,
        kid=signer.kid,
        subject=subject,
    )
