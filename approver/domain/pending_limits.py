"""Bounds on what unauthenticated registrations can add to the database (issue 13, item 5). Pure.

Without a credential, a registration of an unknown agent id creates a ``pending`` record for an
administrator: anyone who can reach the approver could otherwise grow its database at will.
Three limits apply to exactly those registrations (:func:`limited_creation`), never to any
other:

* **per source** and **overall** creation rates: token buckets (:class:`PendingLimiter`), one per
  request source address (the address the approver sees) and one for all sources together. A
  registration takes one token from both or from neither, so one flooding address uses at most
  its own rate of the overall bucket; an address not seen for a while is forgotten (at most
  ``tracked_sources`` are kept, the least recently seen go first: a forgotten address is as if
  its bucket had refilled, and the overall bucket still bounds many addresses together);
* **pending records per namespace** (:func:`namespace_full`, counted in the decision's
  transaction): a registration without a credential has no namespace the cluster vouches for,
  only the one it *claims* (:func:`claimed_namespace`: ``metadata.podNamespace``, else
  StreamSpace's ``metadata.namespace``). A claim costs nothing, so a claimed namespace is a
  bucket of its own only when the approver knows it (``trust.namespaces``); any other claim,
  or none, shares the one "no namespace" bucket (:data:`NO_NAMESPACE`). The records counted
  are the pending ones no credential bound to a namespace (``namespace`` is null), attributed
  the same way; the total is therefore at most ``max_per_namespace`` times (trusted namespaces
  + 1).

**Never limited**: a registration that holds a *valid credential for this agent*
(:func:`holds_bound_credential`): a bootstrap token that verified (signature, issuer, audience,
cluster, time, trust) and whose ``pod`` claim admits the agent's pod, or an API key or a
service-account token whose verifier authenticated it (:attr:`CredentialOutcome.authenticated`:
the secret matched, the API server or the JWKS vouched, even if a scope then refused it) and
that names no other pod. Nor is anything but a *creation*: a known agent's retry (pending or
not) is never limited. A verified token for another pod is no credential for this agent:
otherwise one token read from a pod annotation could create pending records for any number of
invented agent ids. What counts is what the registrar verified for the decision
(:class:`~approver.domain.decision.Facts`): a credential it did not verify (a path switched off)
does not count.

A limited registration is answered ``202`` pending with ``Retry-After`` (StreamSpace's agent
exits on anything but 200/201/202 on its first attempt, and keeps waiting on ``pending``) and
nothing is written: no record, no stored audit event (an audit *line* is emitted).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from approver.domain.binding import POD_NAMESPACE_KEY, pod_namespace_mismatch
from approver.domain.decision import Decision, Effect, Facts, Outcome, Step
from bootstrap_token import BootstrapClaims

#: StreamSpace's agent sends its ``NAMESPACE`` environment variable as ``metadata.namespace``.
NAMESPACE_KEY = "namespace"
#: The bucket of registrations that claim no namespace the approver knows.
NO_NAMESPACE: str | None = None
#: ``Retry-After`` of a full namespace, in seconds: records leave a bucket only when an
#: administrator acts, so waiting longer costs a waiting agent nothing (StreamSpace's agent
#: registers again every 30 s whatever the header says) and saves a count per retry.
NAMESPACE_FULL_RETRY_AFTER_SECONDS = 60


class PendingLimitReason(StrEnum):
    """Reason codes of a limited registration (answer and audit line; never stored)."""

    RATE_LIMITED = "pending_rate_limited"
    NAMESPACE_FULL = "pending_namespace_full"


class Limit(StrEnum):
    """Which limit refused (the metric's ``limit`` label, the audit line's message)."""

    SOURCE = "source"
    OVERALL = "overall"
    NAMESPACE = "namespace"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket's shape: ``per_second`` tokens added, at most ``burst`` kept."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)) or self.burst < 1:
            raise ValueError("a rate limit needs per_second > 0 and burst >= 1")


@dataclass(frozen=True, slots=True)
class PendingLimitPolicy:
    """``pendingLimits``: the rates, the per-namespace cap (None: no cap) and how many source
    addresses are tracked."""

    per_source: RateLimit
    overall: RateLimit
    max_per_namespace: int | None = None
    tracked_sources: int = 10_000


@dataclass(frozen=True, slots=True)
class PendingLimited:
    """A registration refused by a limit: answered 202 pending with ``Retry-After``.

    Attributes:
        reason: the answer's and the audit line's reason code.
        limit: which limit.
        retry_after_seconds: the ``Retry-After`` value (whole seconds, at least 1).
        message: a human detail for the audit line (the limit's figures, the namespace
            bucket; never a request value but the bucket's name).
    """

    reason: PendingLimitReason
    limit: Limit
    retry_after_seconds: int
    message: str


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float

    def refill(self, rate: RateLimit, now: float) -> None:
        elapsed = max(0.0, now - self.at)
        self.tokens = min(float(rate.burst), self.tokens + elapsed * rate.per_second)
        self.at = now

    def wait(self, rate: RateLimit) -> float:
        """Seconds until one token is there."""
        return max(0.0, 1.0 - self.tokens) / rate.per_second


class PendingLimiter:
    """The per-source and overall creation rates (module docstring). Not thread-safe: one per
    event loop.

    Args:
        policy: the limits.
        clock: seconds, monotonic (``time.monotonic``); injected for tests.
    """

    def __init__(self, policy: PendingLimitPolicy, *, clock: Callable[[], float]) -> None:
        if policy.tracked_sources < 1:
            raise ValueError("tracked_sources must be at least 1")
        self._policy = policy
        self._clock = clock
        self._overall = _Bucket(float(policy.overall.burst), clock())
        self._sources: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def policy(self) -> PendingLimitPolicy:
        return self._policy

    @property
    def tracked(self) -> int:
        """How many source addresses are tracked now (at most ``tracked_sources``)."""
        return len(self._sources)

    def take(self, source: str | None) -> PendingLimited | None:
        """One creation from ``source`` (None: unknown, one shared bucket): None when both its
        bucket and the overall one have a token (one is taken from each), else the refusal
        (nothing taken) with the seconds until it would pass."""
        now = self._clock()
        policy = self._policy
        key = source or ""
        bucket = self._sources.get(key)
        if bucket is None:
            bucket = _Bucket(float(policy.per_source.burst), now)
            self._sources[key] = bucket
            while len(self._sources) > policy.tracked_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(key)
            bucket.refill(policy.per_source, now)
        self._overall.refill(policy.overall, now)
        if bucket.tokens < 1.0:
            rate = policy.per_source
            return PendingLimited(
                PendingLimitReason.RATE_LIMITED,
                Limit.SOURCE,
                _seconds(bucket.wait(rate)),
                f"new pending registrations from this address are limited to "
                f"{rate.per_second:g}/s (burst {rate.burst})",
            )
        if self._overall.tokens < 1.0:
            rate = policy.overall
            return PendingLimited(
                PendingLimitReason.RATE_LIMITED,
                Limit.OVERALL,
                _seconds(self._overall.wait(rate)),
                f"new pending registrations are limited to {rate.per_second:g}/s "
                f"(burst {rate.burst}) overall",
            )
        bucket.tokens -= 1.0
        self._overall.tokens -= 1.0
        return None


def limited_decision(limited: PendingLimited) -> Decision:
    """The decision a limited registration is answered with: pending, its reason, nothing
    written."""
    return Decision(Outcome.PENDING, limited.reason.value, Step.MANUAL)


def holds_bound_credential(facts: Facts) -> bool:
    """True when the request holds a valid credential for this agent (module docstring)."""
    request = facts.request
    claims = facts.verification
    if isinstance(claims, BootstrapClaims):
        pod_name = facts.pod_name
        if (
            pod_name is not None
            and claims.pod.admits(pod_name)
            and not pod_namespace_mismatch(request, namespace=claims.namespace)
        ):
            return True
    for outcome in facts.outcomes:
        if not outcome.authenticated:
            continue
        if outcome.pod_name is not None and outcome.pod_name != facts.pod_name:
            continue
        if outcome.namespace is not None and pod_namespace_mismatch(
            request, namespace=outcome.namespace
        ):
            continue
        return True
    return False


def limited_creation(decision: Decision, facts: Facts) -> bool:
    """True when the limits apply: ``decision`` creates a new pending record and the request
    holds no valid credential for the agent."""
    return (
        decision.effect is Effect.CREATE
        and decision.outcome is Outcome.PENDING
        and not holds_bound_credential(facts)
    )


def claimed_namespace(metadata: Mapping[str, Any]) -> object:
    """What a registration says its namespace is: ``metadata.podNamespace`` unless absent or
    null, else ``metadata.namespace`` (any JSON value; None when neither is there). The store
    attributes stored records with the same rule
    (:func:`approver.store.pending_rows.count_unbound_pending`)."""
    for key in (POD_NAMESPACE_KEY, NAMESPACE_KEY):
        value = metadata.get(key)
        if value is not None:
            return value
    return None


def namespace_bucket(metadata: Mapping[str, Any], known: frozenset[str]) -> str | None:
    """The namespace bucket of a registration: its claimed namespace when that is one of
    ``known`` (``trust.namespaces``), else :data:`NO_NAMESPACE`."""
    claim = claimed_namespace(metadata)
    return claim if isinstance(claim, str) and claim in known else NO_NAMESPACE


def namespace_full(bucket: str | None, pending: int, cap: int | None) -> PendingLimited | None:
    """The refusal when ``bucket`` already holds ``pending`` records and ``cap`` allows no more,
    else None."""
    if cap is None or pending < cap:
        return None
    where = f"namespace {bucket}" if bucket is not None else "no known namespace"
    return PendingLimited(
        PendingLimitReason.NAMESPACE_FULL,
        Limit.NAMESPACE,
        NAMESPACE_FULL_RETRY_AFTER_SECONDS,
        f"{pending} pending registrations without a credential claim {where} "
        f"(at most {cap}); an administrator must approve, reject or delete some first",
    )
