"""The auto-approval quota: pure rules, and the decisions it turns into pending."""

from __future__ import annotations

import pytest

from approver.domain.decision import Decision, Effect, Outcome, Step, apply_quota
from approver.domain.quota import QuotaPolicy, QuotaUsage, exceeded, lock_key
from approver.domain.records import ApprovalMethod


@pytest.mark.parametrize(
    ("usage", "policy", "over"),
    [
        (QuotaUsage(namespace_active=2), QuotaPolicy(per_namespace=3), False),
        (QuotaUsage(namespace_active=3), QuotaPolicy(per_namespace=3), True),
        (QuotaUsage(owner_active=1), QuotaPolicy(per_owner=1), True),
        (QuotaUsage(namespace_active=0, owner_active=5), QuotaPolicy(per_namespace=9), False),
        (QuotaUsage(), QuotaPolicy(per_namespace=1, per_owner=1), False),
    ],
    ids=["below", "at the namespace limit", "at the owner limit", "owner not limited", "uncounted"],
)
def test_exceeded(usage: QuotaUsage, policy: QuotaPolicy, over: bool) -> None:
    """One more agent would pass a limit exactly when a counted usage reached it."""
    assert exceeded(usage, policy) is over


def test_lock_keys_are_stable_and_distinct() -> None:
    """Advisory lock keys are the same in every process and differ per namespace and kind."""
    assert lock_key("namespace", "a") == lock_key("namespace", "a")
    assert (
        len({lock_key("namespace", "a"), lock_key("owner", "a"), lock_key("namespace", "b")}) == 3
    )
    assert -(2**63) <= lock_key("namespace", "a") < 2**63


def test_over_quota_approval_waits() -> None:
    """An approval over the quota becomes pending quota_exceeded: nothing burnt, no key."""
    approval = Decision(
        Outcome.APPROVED,
        "bootstrap_token_accepted",
        Step.BOOTSTRAP_TOKEN,
        Effect.CREATE,
        approval_method=ApprovalMethod.NAMESPACE,
        claim_jti=True,
        issue_key=True,
    )
    waiting = apply_quota(
        approval, QuotaUsage(namespace_active=5), QuotaPolicy(per_namespace=5), None
    )
    assert (waiting.outcome, waiting.reason, waiting.effect) == (
        Outcome.PENDING,
        "quota_exceeded",
        Effect.CREATE,
    )
    assert (waiting.claim_jti, waiting.issue_key, waiting.approval_method) == (False, False, None)
