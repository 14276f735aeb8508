"""Prometheus metrics of the webhook, on a registry the app owns (one per app, so tests and
several apps in one process do not collide on the global registry).

Series:

* ``agent_bootstrap_webhook_reviews_total{decision, reason}``: one per POST /mutate answered.
  ``decision`` is a stamping outcome (``stamped``, ``skipped``, ``stripped``, ``not_applicable``,
  ``no_signing_key``), ``error`` (answered allowed after an unexpected failure) or ``malformed``
  (HTTP 4xx). ``reason`` is the stable reason code; both label sets are small and fixed.
* ``agent_bootstrap_webhook_review_duration_seconds``: time to decide and build an answer
  (parsing included, network excluded), in seconds.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class WebhookMetrics:
    """The webhook's counters and histogram, registered on ``registry``."""

    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reviews = Counter(
            "agent_bootstrap_webhook_reviews",
            "AdmissionReviews answered, by decision and reason.",
            ["decision", "reason"],
            registry=registry,
        )
        self.duration = Histogram(
            "agent_bootstrap_webhook_review_duration_seconds",
            "Seconds spent parsing, deciding and answering one AdmissionReview.",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )

    def count(self, *, decision: str, reason: str) -> None:
        """Add one to ``reviews_total{decision, reason}``."""
        self.reviews.labels(decision=decision, reason=reason).inc()

    def value(self, *, decision: str, reason: str) -> float:
        """Current ``reviews_total{decision, reason}`` (for tests and the demo)."""
        sample = self.registry.get_sample_value(
            "agent_bootstrap_webhook_reviews_total", {"decision": decision, "reason": reason}
        )
        return sample or 0.0
