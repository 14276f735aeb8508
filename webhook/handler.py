"""One review in, one answer out: decide, audit, count. No HTTP here (see :mod:`webhook.server`).

Every review answered gets exactly one audit event (``component=webhook``,
``event=admission.review``, docs/design.md "Audit"; fields given in the schema's order, which lets
:func:`webhook.audit.audit_line` skip reordering) and one count in ``reviews_total``. Reviews
the HTTP layer refuses (400/408/413/415/417/503) get one too, through :meth:`Reviewer.refused`.
Events carry the ``jti`` and ``kid``, never the token: the token exists only inside the patch.

Nothing that goes wrong in here may block a pod: :meth:`Reviewer.answer` never raises, and every
failure answers ``allowed: true`` without a patch (docs/design.md, "Failure semantics").
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bootstrap_token import AuditSink
from webhook.audit import Emit, emitter
from webhook.credentials import Credentials
from webhook.errors import MalformedReview, Refusal
from webhook.metrics import WebhookMetrics
from webhook.response import complete, errored, from_decision
from webhook.review import AdmissionReview
from webhook.stamp import Decision, Outcome, StampConfig, decide

logger = logging.getLogger(__name__)

EVENT = "admission.review"


@dataclass(frozen=True, slots=True)
class Reviewer:
    """Answers AdmissionReviews. Built once per app.

    Attributes:
        config: stamping parameters and trust policy.
        credentials: the key material in use; ``credentials.signing`` is read once per review,
            so a review finishes on the key it started with even if a rotation swaps it.
        clock: seconds since the epoch, e.g. :func:`time.time`.
        audit: where audit events go.
        metrics: counters and histogram.
    """

    config: StampConfig
    credentials: Credentials
    clock: Callable[[], float]
    audit: AuditSink
    metrics: WebhookMetrics
    _emit: Emit = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_emit", emitter(self.audit))

    def answer(
        self,
        review: AdmissionReview,
        *,
        started: float | None = None,
        review_bytes: int | None = None,
    ) -> dict[str, Any]:
        """The AdmissionReview response document for ``review``; never raises.

        Args:
            review: the parsed review.
            started: ``time.perf_counter()`` when the review's body was read (default: now);
                ``review_duration_seconds`` observes the time from then to the answer.
            review_bytes: the size of the review's body (see :func:`webhook.stamp.decide`);
                None: the pod is measured when its stamp is checked against the API server's
                limits.

        Returns:
            See :func:`webhook.response.complete`: always ``allowed: true`` with the uid echoed
            and the request's ``apiVersion``. When deciding fails (a malformed pod object or a
            bug), the answer has no patch and ``auditAnnotations.decision`` is ``error``; the
            failure is logged (type and stack, not the message, which could quote pod data),
            counted and audited.
        """
        if started is None:
            started = time.perf_counter()
        request = review.request
        try:
            signing = self.credentials.signing
            decision = decide(
                request,
                config=self.config,
                signer=signing.signer if signing is not None else None,
                now=int(self.clock()),
                review_bytes=review_bytes,
            )
        except MalformedReview as exc:
            logger.warning("admission uid=%r: %s", request.uid, exc.message)
            answer = errored(reason=exc.reason)
            self._record(review, decision=None, error=exc.reason, message=exc.message)
        except Exception as exc:
            logger.error(
                "admission uid=%r: internal error %s, answered allowed without a patch\n%s",
                request.uid,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            answer = errored(reason="internal_error")
            self._record(review, decision=None, error="internal_error", message=None)
        else:
            answer = from_decision(decision)
            self._record(review, decision=decision, error=None, message=None)
        document = complete(answer, api_version=review.api_version, uid=request.uid)
        self.metrics.duration.observe(time.perf_counter() - started)
        return document

    def refused(self, exc: Refusal, *, detail: str | None = None) -> None:
        """Record a request the HTTP layer refused (4xx, 503): one audit event, counts.

        Such a refusal leaves the pod as it came (the API server applies ``failurePolicy``),
        so it is always visible: ``errors_total{kind}``, ``reviews_total{decision="malformed"}``
        and the audit line, whose message is the refusal's plus ``detail`` (the server gives the
        body's size there; never body bytes).
        """
        self.metrics.count(decision="malformed", reason=exc.reason)
        self.metrics.error(kind=exc.reason)
        self._emit(
            {
                "component": "webhook",
                "event": EVENT,
                "decision": "malformed",
                "reason": exc.reason,
                "security": False,
                "cluster": self.config.cluster,
                "message": exc.message if detail is None else f"{exc.message}: {detail}",
            }
        )

    def _record(
        self,
        review: AdmissionReview,
        *,
        decision: Decision | None,
        error: str | None,
        message: str | None,
    ) -> None:
        request = review.request
        metrics = self.metrics
        outcome: str
        if decision is not None:
            outcome = decision.decision
            reason = decision.reason
            if outcome == Outcome.STAMPED:
                metrics.tokens_issued.inc()
            elif outcome == Outcome.STRIPPED or (
                outcome in (Outcome.NO_SIGNING_KEY, Outcome.OVER_LIMIT) and decision.patch
            ):
                metrics.stripped(reason=reason)
            if outcome == Outcome.NO_SIGNING_KEY:
                metrics.error(kind=reason)
        else:
            outcome = "error"
            reason = error or "internal_error"
            metrics.error(kind=reason)
        metrics.count(operation=request.operation, decision=outcome, reason=reason)
        subject = decision.subject if decision is not None else None
        self._emit(
            {
                "component": "webhook",
                "event": EVENT,
                "decision": str(outcome),
                "reason": reason,
                "security": False,
                "actor": request.username or None,
                "cluster": self.config.cluster,
                "namespace": request.namespace or None,
                "pod": subject.pod if subject else None,
                "service_account": subject.service_account if subject else None,
                "jti": decision.jti if decision is not None else None,
                "kid": decision.kid if decision is not None else None,
                "admission_uid": request.uid,
                "dry_run": request.dry_run,
                "message": message,
            }
        )
