"""The webhook's errors, and the answer each gets.

Every request the webhook cannot answer with an AdmissionReview is refused with an HTTP error
``{"error": message}``, one audit event (``admission.review``, decision ``malformed``, the reason,
the body's size in its message) and a count in ``errors_total{kind=reason}``
(:meth:`webhook.handler.Reviewer.refused`). Two
kinds, raised in two places::

    Refusal                     reason code + a message naming fields, never input values
     +-- TransportRefusal       the HTTP exchange is refused before a review is read
     |                          (webhook.server): 413 too_large, 415 unsupported_media_type /
     |                          unsupported_encoding, 408 body_timeout (connection closed),
     |                          503 overloaded (no room in the in-flight budget after
     |                          waiting for it; Retry-After: 1), 400 body_unreadable,
     |                          417 expectation_failed
     +-- MalformedReview        the body is not an AdmissionReview the webhook can answer
                                (webhook.review, webhook.stamp, webhook.inject): 400 empty_body,
                                invalid_json, not_admission_review, ...; a pod of the wrong shape
                                inside a valid review (malformed_pod) is answered allowed,
                                unstamped, with the reason (never a denied pod)

Anything else raised while answering a parsed review is a bug: the answer is still allowed with
the request's uid and reason ``internal_error`` (the pod is admitted unstamped, never blocked).
"""

from __future__ import annotations


class Refusal(ValueError):
    """A request the webhook refuses. ``reason`` is a stable snake_case code for metrics and
    audit; ``message`` (also ``str(exc)``) is a short human message that names fields but never
    echoes input values."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class TransportRefusal(Refusal):
    """The HTTP exchange is refused before a review is read.

    Attributes:
        status: the HTTP status of the answer.
    """

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.status = status


class MalformedReview(Refusal):
    """The request body is not an AdmissionReview the webhook can answer (HTTP 400)."""
