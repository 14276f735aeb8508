"""Bootstrap token plus service-account token: both must name the same pod. Pure.

A bootstrap token is stamped before its pod has a name or a UID, so on its own it says *where*
it may be used (namespace, service account, ``pod.name`` or ``pod.generateName``), and whoever
presents it first binds it. Anyone who can read the pod's annotation before the agent registers
could present it first from somewhere else. A projected service-account token is minted by the
kubelet *for the running pod* and names that pod's name and UID, and the pod's own filesystem is
the only place it exists. Requiring both, for the same pod, means the presenter must be the pod
the bootstrap token was stamped for: a copied annotation is useless without that pod's own
service-account token, even before the real pod's first use.

:func:`check_pod_binding` compares them:

* the service-account token must be authentic and pod-bound (else its own refusal reason);
* its namespace must equal the bootstrap token's ``namespace`` (``sa_pod_namespace_mismatch``);
* its service account must equal the bootstrap token's ``serviceAccount``
  (``sa_service_account_mismatch``);
* its pod name must be admitted by the bootstrap token's ``pod`` claim (equal to ``name``, or
  ``generateName`` plus a suffix), and equal the pod name the approver derived from the agent
  (``sa_pod_name_mismatch``);
* when the approver already knows the pod UID bound to the bootstrap token (from the agent's
  record, or the live pod), the service-account token's pod UID must equal it
  (``sa_pod_uid_mismatch``).

The allow-list (``serviceAccountTokens.allow``) is not consulted: here the service-account
token is a second factor for a bootstrap token the trust policy already vouched for.
"""

from __future__ import annotations

from approver.domain.credential_outcome import CredentialOutcome, Verdict
from approver.domain.records import ApprovalMethod
from approver.service_accounts.reasons import SaReason
from bootstrap_token import BootstrapClaims


def check_pod_binding(
    sa: CredentialOutcome,
    *,
    claims: BootstrapClaims,
    agent_pod_name: str | None = None,
    bound_pod_uid: str | None = None,
    required: bool = False,
) -> SaReason | None:
    """None when the service-account token and the bootstrap token name the same pod.

    Args:
        sa: the outcome of :meth:`ServiceAccountReviewer.review` for the same request.
        claims: the verified bootstrap token's claims.
        agent_pod_name: the pod name the approver derived from the agent (``metadata.podName``
            or the agent id minus its prefix), when it has one.
        bound_pod_uid: the pod UID already bound to the bootstrap token (agent record or live
            pod), when known.
        required: ``serviceAccountTokens.bootstrapBinding == "required"``: a missing
            service-account token is a refusal (``no_service_account_token``) instead of None.

    Returns:
        None, or the reason code to refuse the bootstrap token with (module docstring; a
        refused service-account token gives its own reason, e.g. ``sa_token_expired``).

    Raises:
        ValueError: ``sa`` is not an outcome of the service-account path.
    """
    if sa.approval_method is not ApprovalMethod.SERVICE_ACCOUNT:
        raise ValueError("check_pod_binding needs a service-account outcome")
    if sa.verdict is Verdict.NOT_APPLICABLE:
        return SaReason.NOT_PRESENTED if required else None
    if not sa.authenticated or not sa.pod_name or not sa.pod_uid:
        return SaReason(sa.reason) if sa.refused else SaReason.NOT_POD_BOUND
    if sa.namespace != claims.namespace:
        return SaReason.POD_NAMESPACE_MISMATCH
    if sa.service_account != claims.service_account:
        return SaReason.SERVICE_ACCOUNT_MISMATCH
    if not claims.pod.admits(sa.pod_name) or (
        agent_pod_name is not None and agent_pod_name != sa.pod_name
    ):
        return SaReason.POD_NAME_MISMATCH
    if bound_pod_uid is not None and bound_pod_uid != sa.pod_uid:
        return SaReason.POD_UID_MISMATCH
    return None
