"""The Reviewer: one answer, one audit event and one count per review, failures answered allowed."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bootstrap_token import SigningKey
from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import ANNOTATION, NOW, RecordingSink
from webhook.credentials import Credentials, SigningMaterial
from webhook.errors import MalformedReview
from webhook.handler import Reviewer
from webhook.metrics import WebhookMetrics
from webhook.review import parse_review
from webhook.stamp import StampConfig


def make_reviewer(
    stamp_config: StampConfig,
    signing_key: SigningKey | None,
    audit: RecordingSink,
    clock: Any = lambda: float(NOW),
) -> Reviewer:
    return Reviewer(
        config=stamp_config,
        credentials=Credentials.with_key(signing_key),
        clock=clock,
        audit=audit,
        metrics=WebhookMetrics(registry=CollectorRegistry()),
    )


def review_of(raw: dict[str, Any]) -> Any:
    return parse_review(json.dumps(raw).encode())


#: What an exception message might quote from a pod (env values can be secrets).
POD_DATA = "-".join(["quoted", "pod", "data"])


def broken_clock() -> float:
    raise RuntimeError(POD_DATA)


class TestAnswer:
    def test_stamped_audit_event(
        self, stamp_config: StampConfig, signing_key: SigningKey, audit: RecordingSink
    ) -> None:
        """A stamped review writes one event with every documented field and no token."""
        reviewer = make_reviewer(stamp_config, signing_key, audit)
        raw = streamspace_agent_review(uid="uid-a", rs_hash="abc12")
        document = reviewer.answer(review_of(raw))
        assert len(audit.events) == 1
        event = audit.events[0]
        jti = document["response"]["auditAnnotations"]["jti"]
        assert event.model_dump(exclude={"time"}, exclude_none=True) == {
            "component": "webhook",
            "event": "admission.review",
            "decision": "stamped",
            "reason": "trusted_agent_pod",
            "security": False,
            "actor": "system:serviceaccount:kube-system:replicaset-controller",
            "cluster": "test-cluster",
            "namespace": "streamspace",
            "pod": "streamspace-k8s-agent-abc12-",
            "service_account": "streamspace-agent",
            "jti": jti,
            "kid": signing_key.kid,
            "admission_uid": "uid-a",
            "dry_run": False,
        }
        patch = json.loads(base64.b64decode(document["response"]["patch"]))
        token = patch[0]["value"][ANNOTATION]
        assert token not in event.to_json()
        assert reviewer.metrics.value(decision="stamped", reason="trusted_agent_pod") == 1
        assert reviewer.metrics.sample("tokens_issued_total") == 1
        labels = {"operation": "CREATE", "decision": "stamped", "reason": "trusted_agent_pod"}
        assert reviewer.metrics.sample("reviews_total", labels) == 1

    def test_dry_run_is_audited(
        self, stamp_config: StampConfig, signing_key: SigningKey, audit: RecordingSink
    ) -> None:
        """A dry-run review gets the same answer, and the event says dry run."""
        reviewer = make_reviewer(stamp_config, signing_key, audit)
        raw = streamspace_agent_review()
        raw["request"]["dryRun"] = True
        document = reviewer.answer(review_of(raw))
        assert document["response"]["auditAnnotations"]["decision"] == "stamped"
        assert audit.events[0].dry_run is True

    def test_skipped_event_has_no_jti(
        self, stamp_config: StampConfig, signing_key: SigningKey, audit: RecordingSink
    ) -> None:
        """An untrusted pod's event names the pod and namespace but no jti or kid."""
        reviewer = make_reviewer(stamp_config, signing_key, audit)
        reviewer.answer(review_of(streamspace_agent_review(namespace="sandbox")))
        event = audit.events[0]
        assert (event.decision, event.reason) == ("skipped", "namespace_not_trusted")
        assert event.namespace == "sandbox"
        assert event.pod == "streamspace-k8s-agent-7d9f8b6c5-"
        assert (event.jti, event.kid) == (None, None)
        assert reviewer.metrics.value(decision="skipped", reason="namespace_not_trusted") == 1

    def test_no_signing_key_is_counted(
        self, stamp_config: StampConfig, audit: RecordingSink
    ) -> None:
        """Missing key: answered allowed with a warning, audited and counted."""
        reviewer = make_reviewer(stamp_config, None, audit)
        document = reviewer.answer(review_of(streamspace_agent_review()))
        assert document["response"]["allowed"] is True
        assert "patch" not in document["response"]
        assert audit.events[0].decision == "no_signing_key"
        assert (
            reviewer.metrics.value(decision="no_signing_key", reason="signing_key_unavailable") == 1
        )


class TestFailures:
    def test_internal_error_answers_allowed(
        self,
        stamp_config: StampConfig,
        signing_key: SigningKey,
        audit: RecordingSink,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A failure inside the decision answers allowed, no patch, uid echoed; logged, counted."""
        reviewer = make_reviewer(stamp_config, signing_key, audit, clock=broken_clock)
        raw = streamspace_agent_review(uid="uid-boom", api_version="admission.k8s.io/v1beta1")
        with caplog.at_level(logging.ERROR, logger="webhook.handler"):
            document = reviewer.answer(review_of(raw))
        assert document == {
            "apiVersion": "admission.k8s.io/v1beta1",
            "kind": "AdmissionReview",
            "response": {
                "uid": "uid-boom",
                "allowed": True,
                "auditAnnotations": {"decision": "error", "reason": "internal_error"},
            },
        }
        assert reviewer.metrics.value(decision="error", reason="internal_error") == 1
        assert (audit.events[0].decision, audit.events[0].reason) == ("error", "internal_error")
        assert audit.events[0].admission_uid == "uid-boom"
        [record] = caplog.records
        assert "uid-boom" in record.getMessage()
        assert "RuntimeError" in record.getMessage()
        assert "broken_clock" in record.getMessage()  # the stack is there
        assert POD_DATA not in record.getMessage()  # the message is not

    def test_malformed_pod_answers_allowed(
        self, stamp_config: StampConfig, signing_key: SigningKey, audit: RecordingSink
    ) -> None:
        """A well-formed envelope around a broken pod is answered allowed, reason malformed_pod."""
        reviewer = make_reviewer(stamp_config, signing_key, audit)
        raw = streamspace_agent_review(uid="uid-bad-pod")
        raw["request"]["object"]["metadata"]["labels"] = "not-a-map"
        response = reviewer.answer(review_of(raw))["response"]
        assert response["uid"] == "uid-bad-pod"
        assert response["allowed"] is True
        assert "patch" not in response
        assert response["auditAnnotations"] == {"decision": "error", "reason": "malformed_pod"}
        assert audit.events[0].message is not None
        assert "metadata.labels" in audit.events[0].message
        assert reviewer.metrics.value(decision="error", reason="malformed_pod") == 1

    def test_uid_cannot_forge_log_lines(
        self,
        stamp_config: StampConfig,
        signing_key: SigningKey,
        audit: RecordingSink,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A uid with a newline (anyone reaching the port chooses it) is logged escaped."""
        reviewer = make_reviewer(stamp_config, signing_key, audit)
        raw = streamspace_agent_review(uid="x\nFAKE LOG LINE")
        raw["request"]["object"]["metadata"]["labels"] = "not-a-map"
        with caplog.at_level(logging.WARNING, logger="webhook.handler"):
            reviewer.answer(review_of(raw))
        (record,) = caplog.records
        assert "\n" not in record.getMessage()
        assert "uid='x\\nFAKE LOG LINE'" in record.getMessage()

    def test_refused_is_audited(self, stamp_config: StampConfig, audit: RecordingSink) -> None:
        """A request refused at the HTTP layer still writes one event and one count."""
        reviewer = make_reviewer(stamp_config, None, audit)
        reviewer.refused(MalformedReview("invalid_json", "request body is not valid JSON"))
        [event] = audit.events
        assert (event.decision, event.reason) == ("malformed", "invalid_json")
        assert event.message == "request body is not valid JSON"
        assert event.admission_uid is None
        assert reviewer.metrics.value(decision="malformed", reason="invalid_json") == 1
        assert reviewer.metrics.sample("errors_total", {"kind": "invalid_json"}) == 1
        assert (
            reviewer.metrics.sample(
                "reviews_total",
                {"operation": "unknown", "decision": "malformed", "reason": "invalid_json"},
            )
            == 1
        )


class TestCounts:
    def test_stripped_counts_a_stripped_token(
        self, stamp_config: StampConfig, signing_key: SigningKey, audit: RecordingSink
    ) -> None:
        """Removing a planted token counts in tokens_stripped_total by reason."""
        reviewer = make_reviewer(stamp_config, signing_key, audit)
        raw = streamspace_agent_review(namespace="sandbox", annotations={ANNOTATION: "x.y.z"})
        reviewer.answer(review_of(raw))
        assert (
            reviewer.metrics.sample("tokens_stripped_total", {"reason": "namespace_not_trusted"})
            == 1
        )
        assert reviewer.metrics.sample("tokens_issued_total") == 0

    def test_no_key_is_an_error_kind(self, stamp_config: StampConfig, audit: RecordingSink) -> None:
        """A trusted pod answered without a key counts as errors_total{signing_key_unavailable}."""
        reviewer = make_reviewer(stamp_config, None, audit)
        reviewer.answer(review_of(streamspace_agent_review(annotations={ANNOTATION: "p"})))
        metrics = reviewer.metrics
        assert metrics.sample("errors_total", {"kind": "signing_key_unavailable"}) == 1
        assert metrics.sample("tokens_stripped_total", {"reason": "signing_key_unavailable"}) == 1

    @pytest.mark.parametrize(("operation", "label"), [("UPDATE", "UPDATE"), ("PATCH?", "other")])
    def test_operation_label_is_bounded(
        self,
        stamp_config: StampConfig,
        signing_key: SigningKey,
        audit: RecordingSink,
        operation: str,
        label: str,
    ) -> None:
        """Known operations are labelled as such; anything a client invents is ``other``."""
        reviewer = make_reviewer(stamp_config, signing_key, audit)
        raw = streamspace_agent_review()
        raw["request"]["operation"] = operation
        reviewer.answer(review_of(raw))
        labels = {"operation": label, "decision": "not_applicable", "reason": "not_pod_create"}
        assert reviewer.metrics.sample("reviews_total", labels) == 1

    def test_duration_is_observed(
        self, stamp_config: StampConfig, signing_key: SigningKey, audit: RecordingSink
    ) -> None:
        """Each answered review adds one observation to the latency histogram."""
        reviewer = make_reviewer(stamp_config, signing_key, audit)
        reviewer.answer(review_of(streamspace_agent_review()))
        reviewer.answer(review_of(streamspace_agent_review(namespace="x")))
        assert reviewer.metrics.sample("review_duration_seconds_count") == 2


class TestKeySwap:
    def test_review_uses_the_key_it_started_with(
        self, stamp_config: StampConfig, audit: RecordingSink
    ) -> None:
        """A swap of credentials.signing between reviews changes the kid of the next token only."""
        first, second = SigningKey.generate(), SigningKey.generate()
        reviewer = make_reviewer(stamp_config, first, audit)
        before = reviewer.answer(review_of(streamspace_agent_review()))
        reviewer.credentials.signing = SigningMaterial.of(second)
        after = reviewer.answer(review_of(streamspace_agent_review()))
        assert before["response"]["auditAnnotations"]["kid"] == first.kid
        assert after["response"]["auditAnnotations"]["kid"] == second.kid
        assert [e.kid for e in audit.events] == [first.kid, second.kid]
