"""A bootstrap token and a service-account token presented together must name the same pod."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from approver.domain.credential_outcome import CredentialOutcome, Verdict
from approver.domain.records import ApprovalMethod
from approver.service_accounts import SaReason, check_pod_binding
from bootstrap_token import PodRef
from tests.approver.helpers import (
    NAMESPACE,
    POD_NAME,
    SECOND_POD_NAME,
    SERVICE_ACCOUNT,
    streamspace_claims,
)
from tests.approver.service_accounts.issuer import POD_UID

CLAIMS = streamspace_claims()  # generateName streamspace-k8s-agent-7d9f8b6c5-

SA = CredentialOutcome(
    verdict=Verdict.ACCEPTED,
    approval_method=ApprovalMethod.SERVICE_ACCOUNT,
    reason=SaReason.ACCEPTED.value,
    authenticated=True,
    namespace=NAMESPACE,
    service_account=SERVICE_ACCOUNT,
    pod_name=POD_NAME,
    pod_uid=POD_UID,
)


@pytest.mark.parametrize(
    ("sa", "options", "expected"),
    [
        (SA, {}, None),
        (SA, {"agent_pod_name": POD_NAME, "bound_pod_uid": POD_UID}, None),
        # authentic but not on the allow-list: still a valid second factor
        (replace(SA, verdict=Verdict.REFUSED, reason="sa_not_allowed"), {}, None),
        (replace(SA, namespace="attacker"), {}, SaReason.POD_NAMESPACE_MISMATCH),
        (replace(SA, service_account="default"), {}, SaReason.SERVICE_ACCOUNT_MISMATCH),
        (replace(SA, pod_name="other-pod-abcde"), {}, SaReason.POD_NAME_MISMATCH),
        (replace(SA, pod_name="streamspace-k8s-agent-7d9f8b6c5-"), {}, SaReason.POD_NAME_MISMATCH),
        (SA, {"agent_pod_name": SECOND_POD_NAME}, SaReason.POD_NAME_MISMATCH),
        (SA, {"bound_pod_uid": "another-uid"}, SaReason.POD_UID_MISMATCH),
        (
            replace(SA, verdict=Verdict.REFUSED, reason="sa_token_expired", authenticated=False),
            {},
            SaReason.EXPIRED,
        ),
        (replace(SA, pod_uid=None), {}, SaReason.NOT_POD_BOUND),
        (
            replace(SA, verdict=Verdict.NOT_APPLICABLE, reason="no_service_account_token"),
            {},
            None,
        ),
        (
            replace(SA, verdict=Verdict.NOT_APPLICABLE, reason="no_service_account_token"),
            {"required": True},
            SaReason.NOT_PRESENTED,
        ),
    ],
)
def test_binding(sa: CredentialOutcome, options: dict[str, Any], expected: SaReason | None) -> None:
    """The SA token's namespace, account, pod name and UID must agree with the bootstrap token."""
    assert check_pod_binding(sa, claims=CLAIMS, **options) == expected


def test_named_pod_token() -> None:
    """A token stamped for a named pod admits only that exact pod."""
    claims = streamspace_claims(pod=PodRef(name=POD_NAME))
    assert check_pod_binding(SA, claims=claims) is None
    assert (
        check_pod_binding(replace(SA, pod_name=SECOND_POD_NAME), claims=claims)
        is SaReason.POD_NAME_MISMATCH
    )


def test_copied_annotation_from_an_untrusted_namespace() -> None:
    """The attack this defeats: a pod elsewhere presents a stamped pod's annotation first, with
    its own service-account token; the namespaces differ, the combination is refused as a
    security-relevant reason."""
    thief = replace(SA, namespace="sandbox", service_account="default", pod_name="thief-1")
    reason = check_pod_binding(thief, claims=CLAIMS)
    assert reason is SaReason.POD_NAMESPACE_MISMATCH
    assert reason.security


def test_needs_a_service_account_outcome() -> None:
    """Passing an API-key outcome is a caller bug."""
    with pytest.raises(ValueError, match="service-account"):
        check_pod_binding(replace(SA, approval_method=ApprovalMethod.API_KEY), claims=CLAIMS)
