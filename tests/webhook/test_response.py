"""AdmissionReview responses: uid, apiVersion, patch encoding, warnings, audit annotations."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch
import pytest

from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import ANNOTATION, NOW
from webhook.response import (
    AUDIT_KEYS,
    Answer,
    complete,
    encode_patch,
    errored,
    from_decision,
    short_warning,
)
from webhook.review import ApiVersion, parse_review
from webhook.signer import TokenSigner
from webhook.stamp import (
    MAX_WARNING_CHARS,
    WARN_NO_KEY,
    WARN_REPLACED,
    WARN_STRIPPED,
    Decision,
    Outcome,
    StampConfig,
    decide,
)

VERSIONS: list[ApiVersion] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]


def decided(
    review: dict[str, Any], stamp_config: StampConfig, signer: TokenSigner | None
) -> Decision:
    request = parse_review(json.dumps(review).encode()).request
    return decide(request, config=stamp_config, signer=signer, now=NOW)


class TestComplete:
    @pytest.mark.parametrize("api_version", VERSIONS)
    def test_envelope(self, api_version: ApiVersion) -> None:
        """The answer is in the request's apiVersion, echoes the uid and is allowed."""
        document = complete(Answer(), api_version=api_version, uid="uid-7")
        assert document == {
            "apiVersion": api_version,
            "kind": "AdmissionReview",
            "response": {"uid": "uid-7", "allowed": True},
        }

    def test_patch_is_base64_json_patch(self) -> None:
        """With operations, patchType is JSONPatch and patch is base64 of the JSON array."""
        ops = [{"op": "add", "path": "/metadata/annotations", "value": {"a/b": "c~d"}}]
        response = complete(Answer(patch=ops), api_version=VERSIONS[0], uid="u")["response"]
        assert response["patchType"] == "JSONPatch"
        assert json.loads(base64.b64decode(response["patch"], validate=True)) == ops

    def test_no_ops_means_no_patch_fields(self) -> None:
        """An empty patch leaves out patchType and patch entirely."""
        response = complete(Answer(patch=[]), api_version=VERSIONS[0], uid="u")["response"]
        assert "patchType" not in response
        assert "patch" not in response

    def test_warnings_and_audit_annotations(self) -> None:
        """Warnings and auditAnnotations are passed through as a list and a string map."""
        answer = Answer(warnings=("w1", "w2"), audit_annotations={"decision": "skipped"})
        response = complete(answer, api_version=VERSIONS[1], uid="u")["response"]
        assert response["warnings"] == ["w1", "w2"]
        assert response["auditAnnotations"] == {"decision": "skipped"}

    def test_document_is_json(self) -> None:
        """The document serialises to JSON as is."""
        ops = [{"op": "remove", "path": "/metadata/annotations/x"}]
        document = complete(
            Answer(patch=ops, warnings=["w"], audit_annotations={"reason": "r"}),
            api_version=VERSIONS[0],
            uid="u",
        )
        assert json.loads(json.dumps(document)) == document


class TestEncodePatch:
    def test_compact_standard_base64(self) -> None:
        """The patch is compact JSON in standard (not URL-safe) base64."""
        ops = [{"op": "add", "path": "/a", "value": "???>>>"}]
        encoded = encode_patch(ops)
        assert (
            base64.b64decode(encoded, validate=True)
            == b'[{"op":"add","path":"/a","value":"???>>>"}]'
        )


class TestFromDecision:
    @pytest.mark.parametrize("api_version", VERSIONS)
    def test_stamped(
        self, api_version: ApiVersion, stamp_config: StampConfig, signer: TokenSigner
    ) -> None:
        """A stamped pod's answer carries the patch, and decision, reason, jti, kid as strings."""
        review = streamspace_agent_review(api_version=api_version, uid="uid-s")
        decision = decided(review, stamp_config, signer)
        document = complete(from_decision(decision), api_version=api_version, uid="uid-s")
        response = document["response"]
        assert document["apiVersion"] == api_version
        assert response["uid"] == "uid-s"
        assert response["allowed"] is True
        assert decision.jti is not None
        assert response["auditAnnotations"] == {
            "decision": "stamped",
            "reason": "trusted_agent_pod",
            "jti": decision.jti,
            "kid": signer.kid,
        }
        assert set(response["auditAnnotations"]) <= set(AUDIT_KEYS)
        assert "warnings" not in response
        patch = json.loads(base64.b64decode(response["patch"]))
        pod = jsonpatch.apply_patch(review["request"]["object"], patch)
        assert pod["metadata"]["annotations"][ANNOTATION].count(".") == 2

    def test_stripped(self, stamp_config: StampConfig, signer: TokenSigner) -> None:
        """A stripped pod's answer has the remove patch, a warning, and no jti or kid."""
        review = streamspace_agent_review(namespace="elsewhere", annotations={ANNOTATION: "x"})
        response = complete(
            from_decision(decided(review, stamp_config, signer)),
            api_version=VERSIONS[0],
            uid="u",
        )["response"]
        assert response["auditAnnotations"] == {
            "decision": "stripped",
            "reason": "namespace_not_trusted",
        }
        assert json.loads(base64.b64decode(response["patch"])) == [
            {"op": "remove", "path": "/metadata/annotations/agents.streamspace.io~1bootstrap-token"}
        ]
        assert response["warnings"] == [
            "agent-bootstrap: removed the bootstrap token the pod came with: namespace is not "
            "trusted"
        ]

    def test_no_signing_key(self, stamp_config: StampConfig) -> None:
        """Without a key: allowed, no patch, a warning, no jti or kid."""
        response = complete(
            from_decision(decided(streamspace_agent_review(), stamp_config, None)),
            api_version=VERSIONS[0],
            uid="u",
        )["response"]
        assert response["allowed"] is True
        assert "patch" not in response
        assert response["auditAnnotations"] == {
            "decision": "no_signing_key",
            "reason": "signing_key_unavailable",
        }
        assert len(response["warnings"]) == 1

    def test_not_applicable(self, stamp_config: StampConfig, signer: TokenSigner) -> None:
        """A non-pod review is answered allowed with only decision and reason."""
        review = streamspace_agent_review()
        review["request"]["operation"] = "UPDATE"
        response = complete(
            from_decision(decided(review, stamp_config, signer)),
            api_version=VERSIONS[0],
            uid="u",
        )["response"]
        assert response == {
            "uid": "u",
            "allowed": True,
            "auditAnnotations": {"decision": "not_applicable", "reason": "not_pod_create"},
        }

    def test_outcome_values_are_strings(self) -> None:
        """Every Outcome renders as its plain string value in auditAnnotations."""
        for outcome in Outcome:
            answer = from_decision(Decision(decision=outcome, reason="r"))
            assert answer.audit_annotations["decision"] == outcome.value


class TestErrored:
    def test_allowed_without_patch(self) -> None:
        """An internal failure still answers allowed, unchanged, with the reason recorded."""
        document = complete(errored(reason="internal_error"), api_version=VERSIONS[1], uid="u9")
        assert document == {
            "apiVersion": "admission.k8s.io/v1beta1",
            "kind": "AdmissionReview",
            "response": {
                "uid": "u9",
                "allowed": True,
                "auditAnnotations": {"decision": "error", "reason": "internal_error"},
            },
        }


class TestWarnings:
    @pytest.mark.parametrize(
        "warning",
        [WARN_NO_KEY, WARN_REPLACED]
        + [WARN_STRIPPED.format(why=why) for why in (
            "pod does not match the agent selector",
            "namespace is not trusted",
            "service account is not allowed",
        )],
    )  # fmt: skip
    def test_every_warning_is_short(self, warning: str) -> None:
        """Each warning the webhook can give fits Kubernetes' 120-character limit."""
        assert len(warning) <= MAX_WARNING_CHARS
        assert warning.startswith("agent-bootstrap: ")

    def test_long_warnings_are_cut(self) -> None:
        """A longer message is cut to 120 characters ending in an ellipsis."""
        document = complete(Answer(warnings=["x" * 300, "short"]), api_version=VERSIONS[0], uid="u")
        first, second = document["response"]["warnings"]
        assert len(first) == MAX_WARNING_CHARS
        assert first.endswith("...")
        assert second == "short"
        assert short_warning("y" * MAX_WARNING_CHARS) == "y" * MAX_WARNING_CHARS
