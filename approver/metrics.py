"""Prometheus metrics of the approver, on a registry the app owns (one per app, so tests and
several apps in one process do not collide on the global registry).

Served on their own plain-HTTP port (``metricsPort``, default 9091; 0: off), like the
webhook's: Prometheus scrapes the pod IP without the approver's CA, and the metrics hold no
secret (counts, reasons, ages). Names follow Prometheus's conventions (base units, ``_total``
for counters, ``_seconds``), all prefixed ``agent_bootstrap_approver_``; every label value comes
from a small fixed set (reason codes, route templates), never from a request.

=======================================  =========  =========================================
series                                   type       labels / unit
=======================================  =========  =========================================
``registrations_total``                  counter    ``decision`` (approved, pending,
                                                    rejected), ``reason`` (the decision's
                                                    reason code), ``approval_method``
                                                    (namespace, api_key, service_account,
                                                    manual, none)
``registration_duration_seconds``        histogram  seconds from the body read to the answer
``time_to_approval_seconds``             histogram  ``approval_method``: seconds from the
                                                    agent's first registration to its
                                                    approval (automatic or by an admin)
``pending_agents``                       gauge      agents pending now (refreshed every
                                                    ``metricsRefreshSeconds``)
``oldest_pending_age_seconds``           gauge      age of the oldest pending agent (0: none)
``pending_limited_total``                counter    ``limit``: registrations refused by
                                                    ``pendingLimits`` (202 pending, nothing
                                                    written)
``responses_total``                      counter    ``route`` (the route's template, or
                                                    ``other``), ``code``: every HTTP answer,
                                                    the 503s and 429s among them
``connection_refusals_total``            counter    ``kind`` (request_timeout,
                                                    too_many_incomplete_requests,
                                                    request_header_fields_too_large,
                                                    malformed_http_request): answers the
                                                    connection guard gave before any request
                                                    existed (not in ``responses_total``)
``database_errors_total``                counter    ``kind`` (unavailable, stalled): calls
                                                    that found the database down or hung
``database_ready``                       gauge      1 while the hung-database watchdog says
                                                    ready, else 0
``store_duration_seconds``               histogram  ``operation`` (transaction): seconds a
                                                    database transaction took
``control_plane_calls_total``            counter    ``operation``, ``result`` (ok, refused,
                                                    unavailable): calls to the control
                                                    plane's connector
``control_plane_call_duration_seconds``  histogram  ``operation``
``tls_certificate_expiry_seconds``       gauge      seconds until the serving certificate's
                                                    notAfter
``reloads_total``                        counter    ``material`` (tls), ``result`` (success,
                                                    failure)
``jwks_keys``                            gauge      public keys in the key set now
``build_info``                           gauge      ``version``: 1
=======================================  =========  =========================================
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from approver.domain.records import AgentRecord, ApprovalMethod
from approver.store import Store, StoreUnavailable
from bootstrap_token.reload import ReloadCounts, ReloadResult
from bootstrap_token.version import version

log = logging.getLogger(__name__)

PREFIX = "agent_bootstrap_approver_"

#: 1 ms .. 10 s: a registration takes about 1 ms of CPU; StreamSpace's agent waits 30 s.
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: 1 s .. 1 week: automatic approvals land in the first bucket, manual ones hours later.
_APPROVAL_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 604800.0)
#: 1 ms .. 5 s (the statement timeout).
_STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: The security-relevant refusals (``403*`` in :mod:`approver.domain.decision`'s table): their
#: series exist from the start at 0, so ``increase()`` sees the first one (a series that first
#: appears at 1 increases by 0, and the copied-token alert would miss a single replay).
SECURITY_REASONS = (
    "malformed",
    "bad_alg",
    "unknown_kid",
    "bad_signature",
    "wrong_issuer",
    "wrong_audience",
    "wrong_cluster",
    "ttl_too_long",
    "invalid_token",
    "token_reused",
    "pod_token_mismatch",
    "pod_uid_mismatch",
    "pod_address_mismatch",
    "credential_mismatch",
)

#: Seconds between two refreshes of the pending backlog's gauges.
BACKLOG_REFRESH_SECONDS = 15.0

#: ``approval_method`` of a decision that approved nothing.
NO_METHOD = "none"
#: ``route`` of a request no route matched.
OTHER_ROUTE = "other"


class ApproverMetrics:
    """The approver's series (module docstring), registered on ``registry``.

    Args:
        registry: where to register (default: a registry of its own).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.registrations = Counter(
            PREFIX + "registrations",
            "Agent registrations decided, by decision, reason and approval method.",
            ("decision", "reason", "approval_method"),
            registry=r,
        )
        self.registration_duration = Histogram(
            PREFIX + "registration_duration_seconds",
            "Seconds from a registration's body read to its answer.",
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.time_to_approval = Histogram(
            PREFIX + "time_to_approval_seconds",
            "Seconds from an agent's first registration to its approval.",
            ("approval_method",),
            buckets=_APPROVAL_BUCKETS,
            registry=r,
        )
        self.pending_agents = Gauge(
            PREFIX + "pending_agents", "Agents pending an approval now.", registry=r
        )
        self.oldest_pending_age = Gauge(
            PREFIX + "oldest_pending_age_seconds",
            "Seconds since the oldest pending agent first registered (0: none pending).",
            registry=r,
        )
        self.responses = Counter(
            PREFIX + "responses",
            "HTTP answers, by route template and status code.",
            ("route", "code"),
            registry=r,
        )
        self.connection_refusals = Counter(
            PREFIX + "connection_refusals",
            "Answers the connection guard gave before a request existed, by kind.",
            ("kind",),
            registry=r,
        )
        self.database_errors = Counter(
            PREFIX + "database_errors",
            "Database calls that found the database unavailable or hung.",
            ("kind",),
            registry=r,
        )
        self.database_ready = Gauge(
            PREFIX + "database_ready",
            "1 while the hung-database watchdog says the database answers, else 0.",
            registry=r,
        )
        self.store_duration = Histogram(
            PREFIX + "store_duration_seconds",
            "Seconds a database transaction took, by operation.",
            ("operation",),
            buckets=_STORE_BUCKETS,
            registry=r,
        )
        self.control_plane_calls = Counter(
            PREFIX + "control_plane_calls",
            "Calls to the control plane's connector, by operation and result.",
            ("operation", "result"),
            registry=r,
        )
        self.control_plane_duration = Histogram(
            PREFIX + "control_plane_call_duration_seconds",
            "Seconds a call to the control plane's connector took, by operation.",
            ("operation",),
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.tls_expiry = Gauge(
            PREFIX + "tls_certificate_expiry_seconds",
            "Seconds until the serving certificate's notAfter.",
            registry=r,
        )
        self.reloads = Counter(
            PREFIX + "reloads",
            "Reloads of changed files, by material and result.",
            ("material", "result"),
            registry=r,
        )
        self.jwks_keys = Gauge(
            PREFIX + "jwks_keys", "Public keys in the approver's key set now.", registry=r
        )
        self.build_info = Gauge(
            PREFIX + "build_info",
            "1, labelled with the running agent-bootstrap's version.",
            ("version",),
            registry=r,
        )
        self.build_info.labels(version=version()).set(1)
        for reason in SECURITY_REASONS:
            self.registrations.labels("rejected", reason, NO_METHOD)
        for outcome in ReloadResult:
            self.reloads.labels("tls", str(outcome))

    def registration(
        self, *, decision: str, reason: str, approval_method: ApprovalMethod | None
    ) -> None:
        """Count one decided registration (``decision``: approved, pending or rejected)."""
        method = approval_method.value if approval_method is not None else NO_METHOD
        self.registrations.labels(decision, reason, method).inc()

    def approved(self, *, approval_method: ApprovalMethod | None, waited_seconds: float) -> None:
        """Observe one approval, ``waited_seconds`` after the agent's first registration."""
        method = approval_method.value if approval_method is not None else NO_METHOD
        self.time_to_approval.labels(method).observe(max(0.0, waited_seconds))

    def pending(self, *, count: int, oldest_age_seconds: float) -> None:
        """Set the pending backlog's gauges."""
        self.pending_agents.set(count)
        self.oldest_pending_age.set(max(0.0, oldest_age_seconds))

    def watch_database(self, ready: Callable[[], bool]) -> None:
        """Read ``database_ready`` from ``ready()`` at each scrape."""
        self.database_ready.set_function(lambda: 1.0 if ready() else 0.0)

    def watch_jwks(self, count: Callable[[], int]) -> None:
        """Read ``jwks_keys`` from ``count()`` at each scrape."""
        self.jwks_keys.set_function(lambda: float(count()))


def waited_for_approval(record: AgentRecord) -> float:
    """Seconds from ``record``'s first registration to its approval (0 when not approved)."""
    if record.approved_at is None:
        return 0.0
    return (record.approved_at - record.created_at).total_seconds()


async def refresh_backlog(
    store: Store,
    metrics: ApproverMetrics,
    *,
    clock: Callable[[], float],
    interval_seconds: float = BACKLOG_REFRESH_SECONDS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Set the pending backlog's gauges from ``store`` every ``interval_seconds``, until
    cancelled. A database that cannot be read leaves the last values (the database's own
    series say why)."""
    while True:
        try:
            count, oldest = await store.pending_backlog()
        except StoreUnavailable as exc:
            log.debug("pending backlog not read: %s", exc)
        else:
            age = clock() - oldest.timestamp() if oldest is not None else 0.0
            metrics.pending(count=count, oldest_age_seconds=age)
        await sleep(interval_seconds)


class MeteredReloadCounts(ReloadCounts):
    """:class:`~bootstrap_token.reload.ReloadCounts` that also counts
    ``reloads_total{material, result}``."""

    def __init__(self, metrics: ApproverMetrics, *, material: str) -> None:
        super().__init__()
        self._counter = metrics.reloads
        self._material = material

    def record(self, result: ReloadResult) -> None:
        super().record(result)
        self._counter.labels(self._material, str(result)).inc()
