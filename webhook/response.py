"""AdmissionReview responses: small constructors for an answer, one :func:`complete` for the wire.

Reference: Kubernetes "Dynamic Admission Control", section "Response"
(https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#response).

This webhook never denies: every answer is ``allowed: true``. It answers in the request's
``apiVersion`` and echoes ``request.uid``; both are filled in by :func:`complete` alone, so no
code path can forget them (after controller-runtime's ``Complete``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bootstrap_token.jsonio import dumps
from webhook.patch import PatchOp
from webhook.review import ApiVersion
from webhook.stamp import MAX_WARNING_CHARS, Decision, Outcome

#: The webhook's name in the MutatingWebhookConfiguration the chart installs (its value
#: ``webhook.name``; the kustomize base has the same). The API server prefixes each
#: ``auditAnnotations`` key with it: ``bootstrap-token.agents.streamspace.io/decision``.
WEBHOOK_NAME = "bootstrap-token.agents.streamspace.io"
#: The ``auditAnnotations`` keys this webhook sets, prefixed ``<WEBHOOK_NAME>/`` in the API
#: server's audit log. Documented in docs/webhook.md, "Answers" (tests/docs checks it).
AUDIT_KEYS = ("decision", "reason", "jti", "kid")


@dataclass(slots=True)  # made once per review: not frozen, whose __init__ is 2.5x slower
class Answer:
    """An allowed answer before it is put on the wire.

    Attributes:
        patch: RFC 6902 operations; empty means no patch (and no ``patchType``).
        warnings: messages for the client (Kubernetes: keep each under 120 characters).
        audit_annotations: added to the API server's audit event for this request; the API
            server prefixes each key with the webhook's name.
    """

    patch: Sequence[PatchOp] = field(default=(), repr=False)
    warnings: Sequence[str] = ()
    audit_annotations: Mapping[str, str] = field(default_factory=dict)


def from_decision(decision: Decision) -> Answer:
    """The answer for a stamping decision.

    ``auditAnnotations`` carry ``decision`` and ``reason`` always, ``jti`` and ``kid`` only when
    the pod was stamped.
    """
    annotations = {"decision": str(decision.decision), "reason": decision.reason}
    if decision.decision is Outcome.STAMPED and decision.jti and decision.kid:
        annotations["jti"] = decision.jti
        annotations["kid"] = decision.kid
    return Answer(patch=decision.patch, warnings=decision.warnings, audit_annotations=annotations)


def errored(*, reason: str) -> Answer:
    """The answer when deciding failed unexpectedly: allowed, unchanged, reason recorded.

    Under ``failurePolicy: Ignore`` the API server would admit the pod unstamped anyway; answering
    ``allowed`` ourselves keeps the uid echoed and the reason in the API server's audit log.
    """
    return Answer(audit_annotations={"decision": "error", "reason": reason})


def encode_patch(patch: Sequence[PatchOp]) -> str:
    """The ``response.patch`` field: the JSON Patch array, compact UTF-8 JSON, standard base64."""
    return base64.b64encode(dumps(patch)).decode("ascii")


def short_warning(message: str) -> str:
    """``message`` cut to :data:`~webhook.stamp.MAX_WARNING_CHARS` (ending in ``...``).

    The API server may truncate longer warnings anyway; cutting here keeps the end readable.
    """
    if len(message) <= MAX_WARNING_CHARS:
        return message
    return message[: MAX_WARNING_CHARS - 3] + "..."


def complete(answer: Answer, *, api_version: ApiVersion, uid: str) -> dict[str, Any]:
    """The full AdmissionReview response document.

    Args:
        answer: what to say.
        api_version: the request's ``apiVersion`` (``admission.k8s.io/v1`` or ``v1beta1``);
            the API server requires the response in the same version.
        uid: the request's ``request.uid``; the API server rejects a response without it.

    Returns:
        ``{"apiVersion", "kind": "AdmissionReview", "response": {"uid", "allowed": true, ...}}``
        with ``patchType: "JSONPatch"`` and ``patch`` only when there are operations, and
        ``warnings``/``auditAnnotations`` only when non-empty. Serialise it with
        :func:`bootstrap_token.jsonio.dumps`.
    """
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if answer.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = encode_patch(answer.patch)
    if answer.warnings:
        response["warnings"] = [short_warning(w) for w in answer.warnings]
    if answer.audit_annotations:
        response["auditAnnotations"] = dict(answer.audit_annotations)
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}
