"""Hardening issue item 9: stamping never makes an admissible pod inadmissible. A pod whose
annotations the token would take over the API server's 256 KiB, or whose size it would take over
etcd's 1.5 MiB, is admitted without the stamp (a planted token still removed), with the
decision ``over_limit`` in the answer's ``auditAnnotations``, the metric and the audit line."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap_token import SigningKey
from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import ANNOTATION, NOW, RecordingSink, make_settings
from tests.webhook.test_server import ClientFactory, post_json, serve
from webhook.credentials import Credentials
from webhook.review import parse_review
from webhook.server import create_app
from webhook.signer import TokenSigner
from webhook.stamp import (
    MAX_ANNOTATIONS_BYTES,
    MAX_OBJECT_BYTES,
    Outcome,
    StampConfig,
    decide,
)


def annotations_bytes(pod: dict[str, Any]) -> int:
    """Keys plus values in UTF-8 bytes, as the API server's ValidateAnnotationsSize counts."""
    annotations = pod["metadata"].get("annotations") or {}
    return sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())


def review_with_annotations(total: int, *, planted: bool = False) -> dict[str, Any]:
    """A real agent review whose pod's annotations total exactly ``total`` bytes."""
    review = streamspace_agent_review(uid="uid-limits")
    pod = review["request"]["object"]
    annotations = {ANNOTATION: "planted." + "x" * 600} if planted else {}
    pod["metadata"]["annotations"] = annotations
    filler_key = "example.com/filler"
    room = total - annotations_bytes(pod) - len(filler_key)
    annotations[filler_key] = "é" * (room // 2) + "a" * (room % 2)  # two bytes per é
    assert annotations_bytes(pod) == total
    return review


def stamp(review: dict[str, Any], config: StampConfig, signer: TokenSigner) -> Any:
    request = parse_review(json.dumps(review).encode()).request
    return decide(request, config=config, signer=signer, now=NOW)


class TestAnnotationsLimit:
    def test_just_under_the_limit_is_left_unstamped(
        self, stamp_config: StampConfig, signer: TokenSigner
    ) -> None:
        review = review_with_annotations(MAX_ANNOTATIONS_BYTES - 100)
        decision = stamp(review, stamp_config, signer)
        assert (decision.decision, decision.reason) == (
            Outcome.OVER_LIMIT,
            "annotations_over_limit",
        )
        assert decision.patch == []
        assert decision.warnings == [
            "agent-bootstrap: not stamped: the token would take the pod over 256 KiB of "
            "annotations; needs manual approval"
        ]
        assert decision.jti is None

    def test_a_planted_token_is_still_removed(
        self, stamp_config: StampConfig, signer: TokenSigner
    ) -> None:
        review = review_with_annotations(MAX_ANNOTATIONS_BYTES - 100, planted=True)
        decision = stamp(review, stamp_config, signer)
        assert decision.decision is Outcome.OVER_LIMIT
        pod = jsonpatch.apply_patch(review["request"]["object"], decision.patch)
        assert ANNOTATION not in pod["metadata"]["annotations"]

    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        total=st.integers(MAX_ANNOTATIONS_BYTES - 2_000, MAX_ANNOTATIONS_BYTES),
        planted=st.booleans(),
    )
    def test_the_answer_never_takes_the_pod_over(
        self, total: int, planted: bool, stamp_config: StampConfig, signer: TokenSigner
    ) -> None:
        """Near the limit: stamped and still within it, or unstamped; never over."""
        review = review_with_annotations(total, planted=planted)
        decision = stamp(review, stamp_config, signer)
        pod = jsonpatch.apply_patch(review["request"]["object"], decision.patch)
        assert annotations_bytes(pod) <= MAX_ANNOTATIONS_BYTES
        if decision.decision is Outcome.STAMPED:
            assert pod["metadata"]["annotations"][ANNOTATION].count(".") == 2
        else:
            assert decision.decision is Outcome.OVER_LIMIT
            assert ANNOTATION not in pod["metadata"]["annotations"]

    def test_a_pod_with_room_is_stamped(
        self, stamp_config: StampConfig, signer: TokenSigner
    ) -> None:
        review = review_with_annotations(MAX_ANNOTATIONS_BYTES - 5_000)
        assert stamp(review, stamp_config, signer).decision is Outcome.STAMPED


def big_pod_review(object_bytes: int) -> dict[str, Any]:
    """A real agent review whose pod, as compact JSON, is about ``object_bytes``."""
    review = streamspace_agent_review(uid="uid-big")
    pod = review["request"]["object"]
    container = pod["spec"]["containers"][0]
    size = len(json.dumps(pod, separators=(",", ":")))
    container["args"] = ["--a=" + "&" * (object_bytes - size - 12)]
    return review


class TestObjectLimit:
    def test_a_pod_the_token_would_take_over_1_5_mib_is_left_unstamped(
        self, stamp_config: StampConfig, signer: TokenSigner
    ) -> None:
        review = big_pod_review(MAX_OBJECT_BYTES - 300)
        decision = stamp(review, stamp_config, signer)
        assert (decision.decision, decision.reason) == (Outcome.OVER_LIMIT, "object_over_limit")
        assert decision.warnings[0].endswith("over 1.5 MiB; needs manual approval")

    def test_a_big_pod_with_room_is_stamped(
        self, stamp_config: StampConfig, signer: TokenSigner
    ) -> None:
        review = big_pod_review(MAX_OBJECT_BYTES - 10_000)
        assert stamp(review, stamp_config, signer).decision is Outcome.STAMPED


async def test_over_limit_is_visible_in_the_answer_metric_and_audit(
    aiohttp_client: ClientFactory, tmp_path: Path, signing_key: SigningKey, audit: RecordingSink
) -> None:
    """Through the HTTP server: allowed, no token, auditAnnotations and warnings say why, one
    audit event and the reviews counter carry the decision."""
    app = create_app(
        make_settings(tmp_path),
        credentials=Credentials.with_key(signing_key),
        clock=lambda: float(NOW),
        audit=audit,
    )
    client = await serve(aiohttp_client, app)
    review = review_with_annotations(MAX_ANNOTATIONS_BYTES - 100, planted=True)
    response = await post_json(client, review)
    answer = (await response.json())["response"]
    assert answer["allowed"] is True
    assert answer["auditAnnotations"] == {
        "decision": "over_limit",
        "reason": "annotations_over_limit",
    }
    patch = json.loads(base64.b64decode(answer["patch"]))
    assert [op["op"] for op in patch] == ["remove"]
    assert answer["warnings"][0].startswith("agent-bootstrap: not stamped")
    assert [(e.decision, e.reason) for e in audit.events] == [
        ("over_limit", "annotations_over_limit")
    ]
    sample = app.metrics.registry.get_sample_value(
        "agent_bootstrap_webhook_reviews_total",
        {"operation": "CREATE", "decision": "over_limit", "reason": "annotations_over_limit"},
    )
    assert sample == 1


@pytest.mark.parametrize("review_bytes", [None, 10 * 1024 * 1024])
def test_the_object_is_measured_when_the_review_leaves_no_room(
    review_bytes: int | None, stamp_config: StampConfig, signer: TokenSigner
) -> None:
    """The review's size only spares the measurement; a large review still gets it."""
    review = big_pod_review(MAX_OBJECT_BYTES - 300)
    request = parse_review(json.dumps(review).encode()).request
    decision = decide(
        request, config=stamp_config, signer=signer, now=NOW, review_bytes=review_bytes
    )
    assert decision.reason == "object_over_limit"
