"""One review in, one answer out: decide, audit, count. No HTTP here (see :mod:`webhook.server`).

Every review answered gets exactly one audit event (``component=webhook``,
``event=admission.review``) and one count in ``reviews_total``. Reviews the HTTP layer refuses
(400/413/415) get one too, through :meth:`Reviewer.refused`. Events carry the ``jti`` and
``kid``, never the token: the token exists only inside the patch.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bootstrap_token import AuditEvent, AuditSink, SigningKey
from webhook.metrics import WebhookMetrics
from webhook.response import complete, errored, from_decision
from webhook.review import AdmissionReview, MalformedReview
from webhook.stamp import Decision, StampConfig, decide

logger = logging.getLogger(__name__)

EVENT = "admission.review"


@dataclass(frozen=True, slots=True)
class Reviewer:
    """Answers AdmissionReviews. Built once per app; holds the loaded key, never re-reads it.

    Attributes:
        config: stamping parameters and trust policy.
        signing_key: the Ed25519 key, or None (pods are then left for manual approval).
        clock: seconds since the epoch, e.g. :func:`time.time`.
        audit: where audit events go.
        metrics: counters and histogram.
    """

    config: StampConfig
    signing_key: SigningKey | None
    clock: Callable[[], float]
    audit: AuditSink
    metrics: WebhookMetrics

    def answer(self, review: AdmissionReview) -> dict[str, Any]:
        """The AdmissionReview response document for ``review``; never raises.

        Returns:
            See :func:`webhook.response.complete`: always ``allowed: true`` with the uid echoed
            and the request's ``apiVersion``. When deciding fails (a malformed pod object or a
            bug), the answer has no patch and ``auditAnnotations.decision`` is ``error``; the
            failure is logged (type and stack, not the message, which could quote pod data)
            and counted.
        """
        started = time.perf_counter()
        request = review.request
        try:
            decision = decide(
                request,
                config=self.config,
                signing_key=self.signing_key,
                now=int(self.clock()),
            )
        except MalformedReview as exc:
            logger.warning("admission uid=%s: %s", request.uid, exc.message)
            answer = errored(reason=exc.reason)
            self._record(review, decision=None, error=exc.reason, message=exc.message)
        except Exception as exc:
            logger.error(
                "admission uid=%s: internal error %s, answered allowed without a patch\n%s",
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

    def refused(self, exc: MalformedReview) -> None:
        """Record a request the HTTP layer refused (4xx): one audit event, one count."""
        self.metrics.count(decision="malformed", reason=exc.reason)
        self.audit.emit(
            AuditEvent(
                component="webhook",
                event=EVENT,
                decision="malformed",
                reason=exc.reason,
                cluster=self.config.cluster,
                message=exc.message,
            )
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
        outcome = str(decision.decision) if decision is not None else "error"
        reason = decision.reason if decision is not None else (error or "internal_error")
        subject = decision.subject if decision is not None else None
        claims = decision.claims if decision is not None else None
        self.metrics.count(decision=outcome, reason=reason)
        self.audit.emit(
            AuditEvent(
                component="webhook",
                event=EVENT,
                decision=outcome,
                reason=reason,
                actor=request.user_info.username or None,
                cluster=self.config.cluster,
                namespace=request.namespace or None,
                pod=subject.pod if subject else None,
                service_account=subject.service_account if subject else None,
                jti=claims.jti if claims else None,
                kid=decision.kid if decision is not None else None,
                admission_uid=request.uid,
                dry_run=request.is_dry_run,
                message=message,
            )
        )
