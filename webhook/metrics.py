"""Prometheus metrics of the webhook, on a registry the app owns (one per app, so tests and
several apps in one process do not collide on the global registry).

Served on their own plain-HTTP port (``metricsPort``, :mod:`bootstrap_token.metrics_http`). Series
(all prefixed ``agent_bootstrap_webhook_``; label values come from small fixed sets):

=====================================  =========  ============================================
series                                 type       labels / unit
=====================================  =========  ============================================
``reviews_total``                      counter    ``operation`` (CREATE, UPDATE, DELETE,
                                                  CONNECT, other; ``unknown`` when refused
                                                  before parsing),
                                                  ``decision`` (stamped, skipped, stripped,
                                                  not_applicable, no_signing_key,
                                                  over_limit, error, malformed), ``reason``
``tokens_issued_total``                counter    tokens minted (dry runs included)
``tokens_stripped_total``              counter    ``reason``: pre-set tokens removed
``errors_total``                       counter    ``kind``: empty_body, invalid_json,
                                                  not_admission_review, unsupported_media_type,
                                                  unsupported_encoding, expectation_failed,
                                                  too_large, body_timeout, body_unreadable,
                                                  overloaded, malformed_pod, internal_error,
                                                  signing_key_unavailable
``review_duration_seconds``            histogram  seconds from body read to answer built
``body_budget_waits_total``            counter    ``result`` (admitted, refused): bodies that
                                                  found no room in maxInFlightBodyBytes at
                                                  once and waited (refused: 503 overloaded)
``signing_key_age_seconds``            gauge      seconds since the key file's mtime
``signing_key_info``                   gauge      ``kid``: 1 for the key in use, 0 for
                                                  keys used before it
``tls_certificate_expiry_seconds``     gauge      seconds until the leaf's notAfter
``tls_certificate_age_seconds``        gauge      seconds since the leaf's notBefore
``reloads_total``                      counter    ``material`` (signing_key, tls), ``result``
                                                  (success, failure)
``build_info``                         gauge      ``version``: 1, labelled with the running
                                                  agent-bootstrap's version
                                                  (:mod:`bootstrap_token.version`)
=====================================  =========  ============================================

The gauges are refreshed on each look at the files (``reloadIntervalSeconds``) and on load.
With ``workers > 1`` the values live in prometheus_client's multiprocess files (one per worker)
and the supervisor serves their sum; gauges then keep the most recent value of a live worker.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bootstrap_token.reload import ReloadResult
from bootstrap_token.version import version

PREFIX = "agent_bootstrap_webhook_"

# 100 µs .. 1 s: a stamped review takes about 100 µs of CPU; the API server gives up at 10 s.
_DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)

#: Values of the ``operation`` label; anything else a client sends is counted as ``other``.
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})


class WebhookMetrics:
    """The webhook's series, registered on ``registry``.

    Label children are cached: ``labels()`` takes a lock and builds a tuple per call, which
    showed up in profiles of the hot path.
    """

    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reviews = Counter(
            PREFIX + "reviews",
            "AdmissionReviews answered, by operation, decision and reason.",
            ["operation", "decision", "reason"],
            registry=registry,
        )
        self.tokens_issued = Counter(
            PREFIX + "tokens_issued", "Bootstrap tokens minted.", registry=registry
        )
        self.tokens_stripped = Counter(
            PREFIX + "tokens_stripped",
            "Bootstrap-token annotations removed from pods not trusted, by reason.",
            ["reason"],
            registry=registry,
        )
        self.errors = Counter(
            PREFIX + "errors",
            "Reviews that could not be answered normally, by kind.",
            ["kind"],
            registry=registry,
        )
        self.duration = Histogram(
            PREFIX + "review_duration_seconds",
            "Seconds spent parsing, deciding and answering one AdmissionReview.",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.signing_key_age = Gauge(
            PREFIX + "signing_key_age_seconds",
            "Seconds since the signing key file in use was written (its mtime).",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.signing_key_info = Gauge(
            PREFIX + "signing_key_info",
            "1 for the kid of the signing key in use.",
            ["kid"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.tls_expiry = Gauge(
            PREFIX + "tls_certificate_expiry_seconds",
            "Seconds until the serving certificate's notAfter (negative once expired).",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.tls_age = Gauge(
            PREFIX + "tls_certificate_age_seconds",
            "Seconds since the serving certificate's notBefore.",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.budget_waits = Counter(
            PREFIX + "body_budget_waits",
            "Request bodies that waited for room in maxInFlightBodyBytes, by result "
            "(admitted, or refused with 503 overloaded).",
            ["result"],
            registry=registry,
        )
        self.reloads = Counter(
            PREFIX + "reloads",
            "Attempts to load changed key or certificate files, by material and result.",
            ["material", "result"],
            registry=registry,
        )
        # Every failure series exists from the start at 0: increase() over a series that
        # first appears at 1 is 0, and the reload alert would miss the first failure.
        for material in ("signing_key", "tls"):
            for outcome in ReloadResult:
                self.reloads.labels(material=material, result=str(outcome))
        # A gauge, not prometheus_client's Info: Info has no multiprocess mode (workers > 1).
        # "max": every worker writes the same 1, and it stays while workers restart.
        self.build_info = Gauge(
            PREFIX + "build_info",
            "1, labelled with the version of agent-bootstrap this webhook runs.",
            ["version"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.build_info.labels(version=version()).set(1)
        self._kid: str | None = None
        self._reviews: dict[tuple[str, str, str], Counter] = {}
        self._stripped: dict[str, Counter] = {}
        self._errors: dict[str, Counter] = {}

    def count(self, *, decision: str, reason: str, operation: str = "unknown") -> None:
        """Add one to ``reviews_total{operation, decision, reason}``.

        ``operation`` outside :data:`OPERATIONS` (and not ``unknown``) is counted as ``other``,
        so a client cannot grow the label set.
        """
        if operation not in OPERATIONS and operation != "unknown":
            operation = "other"
        key = (operation, decision, reason)
        child = self._reviews.get(key)
        if child is None:
            child = self._reviews[key] = self.reviews.labels(
                operation=operation, decision=decision, reason=reason
            )
        child.inc()

    def stripped(self, *, reason: str) -> None:
        """Add one to ``tokens_stripped_total{reason}``."""
        child = self._stripped.get(reason)
        if child is None:
            child = self._stripped[reason] = self.tokens_stripped.labels(reason=reason)
        child.inc()

    def error(self, *, kind: str) -> None:
        """Add one to ``errors_total{kind}``."""
        child = self._errors.get(kind)
        if child is None:
            child = self._errors[kind] = self.errors.labels(kind=kind)
        child.inc()

    def budget_waited(self, *, admitted: bool) -> None:
        """Add one to ``body_budget_waits_total{result}`` (``admitted`` or ``refused``)."""
        self.budget_waits.labels(result="admitted" if admitted else "refused").inc()

    def reloaded(self, *, material: str, ok: bool) -> None:
        """Add one to ``reloads_total{material, result}``."""
        result = ReloadResult.SUCCESS if ok else ReloadResult.FAILURE
        self.reloads.labels(material=material, result=str(result)).inc()

    def set_signing_key(self, *, kid: str | None, age_seconds: float | None) -> None:
        """Publish the key in use (``signing_key_info{kid} 1``, the previous kid drops to 0) and
        its age in seconds (NaN without a key).

        The previous kid is set to 0 rather than removed: with several workers the values live
        in files, where a removed child would keep its last value.
        """
        if kid != self._kid:
            if self._kid is not None:
                self.signing_key_info.labels(kid=self._kid).set(0)
            if kid is not None:
                self.signing_key_info.labels(kid=kid).set(1)
            self._kid = kid
        self.signing_key_age.set(age_seconds if age_seconds is not None else float("nan"))

    def set_certificate(self, *, expiry_seconds: float, age_seconds: float) -> None:
        """Publish the serving certificate's remaining and elapsed lifetime in seconds."""
        self.tls_expiry.set(expiry_seconds)
        self.tls_age.set(age_seconds)

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of series ``agent_bootstrap_webhook_<name>`` (tests, the demo)."""
        value = self.registry.get_sample_value(PREFIX + name, labels or {})
        return value or 0.0

    def value(self, *, decision: str, reason: str) -> float:
        """``reviews_total{decision, reason}`` summed over operations (tests and the demo)."""
        total = 0.0
        for metric in self.reviews.collect():
            for sample in metric.samples:
                if (
                    sample.name.endswith("_total")
                    and sample.labels.get("decision") == decision
                    and sample.labels.get("reason") == reason
                ):
                    total += sample.value
        return total
