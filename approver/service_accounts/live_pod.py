"""The live pod behind an accepted service-account token. Pure.

An offline-verified token (``serviceAccountTokens.mode: offline``) stays valid until ``exp``
even after its pod is deleted: only the API server knows the pod is gone, and offline mode
does not ask it about the token. Where the approver may read pods (``kubernetes.enabled``), the
registrar reads the pod the token names and :func:`check_token_pod` requires it to exist with
the token's pod UID, so a token copied out of a deleted pod (or out of an earlier pod of the
same name, e.g. a StatefulSet's) approves nothing. In ``tokenreview`` mode the API server has
already refused such a token (``sa_token_invalidated``); the read then only supplies the pod's
controller, recorded as the agent's owner.

Rules, for an accepted outcome (any other outcome passes through unchanged):

=========================================  ===================  ========  ====================
live pod                                   reason               security  effect
=========================================  ===================  ========  ====================
none (404), or another UID under the name  ``sa_pod_gone``      yes       403, nothing written
could not be read (API error, timeout)     ``sa_pod_lookup_     no        202 pending, retry
                                           failed``
exists with the token's UID                accepted             no        ``controller`` set
=========================================  ===================  ========  ====================

A terminating pod still counts as live, as it does for TokenReview until the pod is deleted.
"""

from __future__ import annotations

from dataclasses import replace

from approver.domain.binding import LivePod
from approver.domain.credential_outcome import CredentialOutcome, Verdict
from approver.service_accounts.reasons import SaReason


def needs_pod(outcome: CredentialOutcome) -> tuple[str, str] | None:
    """``(namespace, pod name)`` to read for ``outcome``, or None when it is not an accepted,
    pod-bound service-account outcome."""
    if not outcome.accepted or not outcome.namespace or not outcome.pod_name:
        return None
    return outcome.namespace, outcome.pod_name


def check_token_pod(outcome: CredentialOutcome, pod: LivePod | None) -> CredentialOutcome:
    """``outcome`` checked against the live pod read for :func:`needs_pod` (module docstring).

    Args:
        outcome: an outcome of the service-account path.
        pod: the pod read by the token's namespace and pod name; None when the API said 404.

    Returns:
        The outcome, refused with ``sa_pod_gone`` when the pod is not the token's, else with
        ``controller`` set to the pod's controller.
    """
    if needs_pod(outcome) is None:
        return outcome
    if pod is None or pod.uid != outcome.pod_uid:
        return replace(
            outcome,
            verdict=Verdict.REFUSED,
            reason=SaReason.POD_GONE.value,
            security=SaReason.POD_GONE.security,
            message="the token's pod no longer exists (deleted, or replaced by another pod "
            "of the same name)",
        )
    return replace(outcome, controller=pod.controller)


def pod_lookup_failed(outcome: CredentialOutcome, detail: str) -> CredentialOutcome:
    """``outcome`` refused, for now, because its pod could not be read (a pending reason:
    the agent registers again after ``Retry-After``)."""
    return replace(
        outcome,
        verdict=Verdict.REFUSED,
        reason=SaReason.POD_LOOKUP_FAILED.value,
        security=SaReason.POD_LOOKUP_FAILED.security,
        message=f"the token's pod could not be read: {detail}",
    )
