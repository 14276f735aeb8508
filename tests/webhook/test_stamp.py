"""The stamping decision table over the real fixtures, and the token it mints."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonpatch
import pytest

from bootstrap_token import KeySet, TrustPolicy, VerificationPolicy, read_header, verify
from tests.payloads import KUBECTL_REVIEW, REPLICASET_REVIEW, load_json, streamspace_agent_review
from tests.webhook.conftest import ANNOTATION, NOW
from webhook.errors import MalformedReview
from webhook.review import AdmissionRequest, parse_review
from webhook.signer import TokenSigner
from webhook.stamp import Decision, Outcome, StampConfig, decide

AGENT_LABELS = {"app.kubernetes.io/component": "k8s-agent"}


def request_of(review: dict[str, Any]) -> AdmissionRequest:
    return parse_review(json.dumps(review).encode()).request


def kubectl_agent(namespace: str = "streamspace") -> dict[str, Any]:
    """The kubectl named-pod review, moved to ``namespace`` and labelled as an agent."""
    review: dict[str, Any] = load_json(KUBECTL_REVIEW)
    review["request"]["namespace"] = namespace
    review["request"]["object"]["metadata"]["namespace"] = namespace
    review["request"]["object"]["metadata"]["labels"] = AGENT_LABELS
    return review


def with_request(review: dict[str, Any], **changes: Any) -> dict[str, Any]:
    review["request"].update(changes)
    return review


def object_namespace_lies() -> dict[str, Any]:
    """An agent pod whose object claims the trusted namespace; the API server says otherwise."""
    review = streamspace_agent_review(namespace="team-sandbox")
    review["request"]["object"]["metadata"]["namespace"] = "streamspace"
    return review


@dataclass(frozen=True)
class Case:
    id: str
    review: Callable[[], dict[str, Any]]
    decision: Outcome
    reason: str
    ops: tuple[str, ...] = ()
    warning: str | None = None
    service_accounts: frozenset[str] = frozenset()


PLANTED = {ANNOTATION: "planted.token.value", "keep": "me"}

CASES = [
    Case("trusted-v1", lambda: streamspace_agent_review(), Outcome.STAMPED, "trusted_agent_pod",
         ("add",)),
    Case("trusted-v1beta1",
         lambda: streamspace_agent_review(api_version="admission.k8s.io/v1beta1"),
         Outcome.STAMPED, "trusted_agent_pod", ("add",)),
    Case("trusted-dry-run",
         lambda: with_request(streamspace_agent_review(), dryRun=True),
         Outcome.STAMPED, "trusted_agent_pod", ("add",)),
    Case("trusted-pre-set-replaced",
         lambda: streamspace_agent_review(annotations=PLANTED),
         Outcome.STAMPED, "trusted_agent_pod", ("add",), "replaced the bootstrap token"),
    Case("kubectl-named-trusted", kubectl_agent, Outcome.STAMPED, "trusted_agent_pod", ("add",)),
    Case("untrusted-namespace",
         lambda: streamspace_agent_review(namespace="team-sandbox"),
         Outcome.SKIPPED, "namespace_not_trusted"),
    Case("untrusted-namespace-pre-set",
         lambda: streamspace_agent_review(namespace="team-sandbox", annotations=PLANTED),
         Outcome.STRIPPED, "namespace_not_trusted", ("remove",), "namespace is not trusted"),
    Case("object-namespace-ignored", object_namespace_lies,
         Outcome.SKIPPED, "namespace_not_trusted"),
    Case("kubectl-untrusted", lambda: kubectl_agent("test1"),
         Outcome.SKIPPED, "namespace_not_trusted"),
    Case("labels-not-matching",
         lambda: streamspace_agent_review(labels={"app": "web"}),
         Outcome.SKIPPED, "not_agent_pod"),
    Case("labels-not-matching-pre-set",
         lambda: streamspace_agent_review(labels={"app": "web"}, annotations=PLANTED),
         Outcome.STRIPPED, "not_agent_pod", ("remove",), "does not match the agent selector"),
    Case("replicaset-fixture", lambda: load_json(REPLICASET_REVIEW),
         Outcome.SKIPPED, "not_agent_pod"),
    Case("kubectl-fixture", lambda: load_json(KUBECTL_REVIEW), Outcome.SKIPPED, "not_agent_pod"),
    Case("sa-allowed", lambda: streamspace_agent_review(), Outcome.STAMPED, "trusted_agent_pod",
         ("add",), service_accounts=frozenset({"streamspace:streamspace-agent"})),
    Case("sa-not-allowed", lambda: streamspace_agent_review(service_account="intruder"),
         Outcome.SKIPPED, "service_account_not_allowed",
         service_accounts=frozenset({"streamspace:streamspace-agent"})),
    Case("sa-not-allowed-pre-set",
         lambda: streamspace_agent_review(service_account="intruder", annotations=PLANTED),
         Outcome.STRIPPED, "service_account_not_allowed", ("remove",),
         "service account is not allowed",
         service_accounts=frozenset({"streamspace:streamspace-agent"})),
    Case("sa-allowed-other-namespace-only", lambda: streamspace_agent_review(),
         Outcome.SKIPPED, "service_account_not_allowed",
         service_accounts=frozenset({"other:streamspace-agent"})),
    Case("update", lambda: with_request(streamspace_agent_review(), operation="UPDATE"),
         Outcome.NOT_APPLICABLE, "not_pod_create"),
    Case("delete-pre-set",
         lambda: with_request(streamspace_agent_review(annotations=PLANTED), operation="DELETE"),
         Outcome.NOT_APPLICABLE, "not_pod_create"),
    Case("not-a-pod",
         lambda: with_request(
             streamspace_agent_review(),
             kind={"group": "apps", "version": "v1", "kind": "Deployment"},
             resource={"group": "apps", "version": "v1", "resource": "deployments"},
         ),
         Outcome.NOT_APPLICABLE, "not_pod_create"),
    Case("pod-subresource",
         lambda: with_request(streamspace_agent_review(), subResource="status"),
         Outcome.NOT_APPLICABLE, "not_pod_create"),
]  # fmt: skip


def config_for(stamp_config: StampConfig, case: Case) -> StampConfig:
    trust = TrustPolicy(
        namespaces=frozenset({"streamspace"}), service_accounts=case.service_accounts
    )
    return dataclasses.replace(stamp_config, trust=trust)


class TestDecisionTable:
    @pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
    def test_decision(self, case: Case, stamp_config: StampConfig, signer: TokenSigner) -> None:
        """Each row of the table of docs/design.md, "Webhook behaviour", gets its decision,
        reason, patch and warning."""
        review = case.review()
        request = request_of(review)
        decision = decide(request, config=config_for(stamp_config, case), signer=signer, now=NOW)
        assert decision.decision is case.decision
        assert decision.reason == case.reason
        assert tuple(op["op"] for op in decision.patch) == case.ops
        if case.warning is None:
            assert decision.warnings == []
        else:
            assert len(decision.warnings) == 1
            assert case.warning in decision.warnings[0]
            assert decision.warnings[0].startswith("agent-bootstrap: ")
            assert len(decision.warnings[0]) <= 120
        stamped = decision.decision is Outcome.STAMPED
        assert (decision.jti is not None) is stamped
        assert decision.kid == (signer.kid if stamped else None)
        # Every patch applies to the object exactly as sent.
        patched = jsonpatch.apply_patch(review["request"]["object"], decision.patch)
        annotations = patched["metadata"].get("annotations") or {}
        if stamped:
            assert annotations[ANNOTATION].count(".") == 2
            assert annotations[ANNOTATION] != PLANTED[ANNOTATION]
        elif case.decision is Outcome.NOT_APPLICABLE:
            assert patched == review["request"]["object"]
        else:
            assert ANNOTATION not in annotations
        if case.ops == ("remove",):
            assert annotations == {"keep": "me"}


class TestSubject:
    def test_generate_name_pod(self, stamp_config: StampConfig, signer: TokenSigner) -> None:
        """A controller pod is named by its generateName, namespace by request.namespace."""
        review = streamspace_agent_review(namespace="team-sandbox", rs_hash="1a2b3c")
        decision = decide(request_of(review), config=stamp_config, signer=signer, now=NOW)
        assert decision.subject is not None
        assert decision.subject.namespace == "team-sandbox"
        assert decision.subject.pod == "streamspace-k8s-agent-1a2b3c-"
        assert decision.subject.service_account == "streamspace-agent"

    def test_not_applicable_has_no_subject(
        self, stamp_config: StampConfig, signer: TokenSigner
    ) -> None:
        """A review that is not a Pod CREATE is about no pod."""
        review = with_request(streamspace_agent_review(), operation="UPDATE")
        decision = decide(request_of(review), config=stamp_config, signer=signer, now=NOW)
        assert decision.subject is None
        assert decision.patch == []


class TestNoSigningKey:
    def test_allowed_without_token(self, stamp_config: StampConfig) -> None:
        """A trusted pod with no key available: no patch, a warning, decision no_signing_key."""
        decision = decide(
            request_of(streamspace_agent_review()), config=stamp_config, signer=None, now=NOW
        )
        assert decision.decision is Outcome.NO_SIGNING_KEY
        assert decision.reason == "signing_key_unavailable"
        assert decision.patch == []
        assert decision.jti is None
        assert decision.kid is None
        assert decision.warnings == [
            "agent-bootstrap: no signing key loaded; pod not stamped, needs manual approval"
        ]

    def test_pre_set_token_is_removed(self, stamp_config: StampConfig) -> None:
        """A pre-set value is stripped even when we cannot stamp, so no planted token survives."""
        review = streamspace_agent_review(annotations=PLANTED)
        decision = decide(request_of(review), config=stamp_config, signer=None, now=NOW)
        assert decision.decision is Outcome.NO_SIGNING_KEY
        patched = jsonpatch.apply_patch(review["request"]["object"], decision.patch)
        assert patched["metadata"]["annotations"] == {"keep": "me"}

    def test_untrusted_pod_is_still_skipped(self, stamp_config: StampConfig) -> None:
        """Without a key, pods that are not trusted keep their own skip reason."""
        review = streamspace_agent_review(namespace="team-sandbox")
        decision = decide(request_of(review), config=stamp_config, signer=None, now=NOW)
        assert decision.decision is Outcome.SKIPPED
        assert decision.reason == "namespace_not_trusted"


class TestMalformedPod:
    def test_pod_create_without_object(
        self, stamp_config: StampConfig, signer: TokenSigner
    ) -> None:
        """A Pod CREATE without ``object`` is a malformed review."""
        review = streamspace_agent_review()
        del review["request"]["object"]
        with pytest.raises(MalformedReview) as info:
            decide(request_of(review), config=stamp_config, signer=signer, now=NOW)
        assert info.value.reason == "malformed_pod"
        assert "without request.object" in info.value.message

    def test_pod_without_any_name(self, stamp_config: StampConfig, signer: TokenSigner) -> None:
        """A pod with neither name nor generateName cannot be named in a token."""
        review = streamspace_agent_review()
        del review["request"]["object"]["metadata"]["generateName"]
        with pytest.raises(MalformedReview) as info:
            decide(request_of(review), config=stamp_config, signer=signer, now=NOW)
        assert info.value.reason == "malformed_pod"
        assert "generateName" in info.value.message


def stamp(
    review: dict[str, Any], stamp_config: StampConfig, signer: TokenSigner
) -> tuple[Decision, str]:
    decision = decide(request_of(review), config=stamp_config, signer=signer, now=NOW)
    assert decision.decision is Outcome.STAMPED
    patched = jsonpatch.apply_patch(review["request"]["object"], decision.patch)
    token: str = patched["metadata"]["annotations"][ANNOTATION]
    return decision, token


class TestMintedToken:
    def policy(self, stamp_config: StampConfig) -> VerificationPolicy:
        return VerificationPolicy(
            issuer=stamp_config.issuer, audience=stamp_config.audience, trust=stamp_config.trust
        )

    def test_controller_pod_claims(
        self, stamp_config: StampConfig, signer: TokenSigner, key_set: KeySet
    ) -> None:
        """The token verifies and names request.namespace, generateName, owner, SA and uid."""
        review = streamspace_agent_review(uid="uid-42", rs_hash="7d9f8b6c5")
        review["request"]["object"]["metadata"]["namespace"] = "ignored-object-namespace"
        decision, token = stamp(review, stamp_config, signer)
        claims = verify(token, key_set, self.policy(stamp_config), now=NOW + 10)
        owner = review["request"]["object"]["metadata"]["ownerReferences"][0]
        assert claims.namespace == "streamspace"
        assert claims.pod.generate_name == "streamspace-k8s-agent-7d9f8b6c5-"
        assert claims.pod.name is None
        assert claims.owner is not None
        assert (claims.owner.kind, claims.owner.name, claims.owner.uid) == (
            "ReplicaSet",
            "streamspace-k8s-agent-7d9f8b6c5",
            owner["uid"],
        )
        assert claims.service_account == "streamspace-agent"
        assert claims.admission_uid == "uid-42"
        assert claims.cluster == "test-cluster"
        assert (claims.iss, claims.aud) == ("agent-bootstrap-webhook", "agent-approver")
        assert (claims.iat, claims.nbf, claims.exp) == (NOW, NOW, NOW + 3600)
        assert claims.jti == decision.jti
        assert read_header(token)["kid"] == signer.kid == decision.kid

    def test_named_pod_claims(
        self, stamp_config: StampConfig, signer: TokenSigner, key_set: KeySet
    ) -> None:
        """A kubectl-made pod is named by ``pod.name``, has no owner and the default SA."""
        review = kubectl_agent()
        review["request"]["object"]["spec"].pop("serviceAccountName", None)
        review["request"]["object"]["spec"].pop("serviceAccount", None)
        _, token = stamp(review, stamp_config, signer)
        claims = verify(token, key_set, self.policy(stamp_config), now=NOW)
        assert claims.pod.name == "test-pod01"
        assert claims.pod.generate_name is None
        assert claims.owner is None
        assert claims.service_account == "default"
        assert claims.admission_uid == "60df4b0b-8856-4ce7-9fb3-bc8034856995"

    def test_ttl_from_config(
        self, stamp_config: StampConfig, signer: TokenSigner, key_set: KeySet
    ) -> None:
        """``exp - iat`` is the configured TTL in seconds."""
        config = dataclasses.replace(stamp_config, ttl_seconds=300)
        _, token = stamp(streamspace_agent_review(), config, signer)
        assert verify(token, key_set, self.policy(config), now=NOW).ttl_seconds == 300

    def test_every_review_gets_a_fresh_jti(
        self, stamp_config: StampConfig, signer: TokenSigner
    ) -> None:
        """Two reviews of the same pod template never share a ``jti``."""
        review = streamspace_agent_review(uid="same")
        first, _ = stamp(review, stamp_config, signer)
        second, _ = stamp(review, stamp_config, signer)
        assert first.jti is not None
        assert first.jti != second.jti

    def test_repr_hides_the_token(self, stamp_config: StampConfig, signer: TokenSigner) -> None:
        """A Decision printed in a log line does not carry the token."""
        decision, token = stamp(streamspace_agent_review(), stamp_config, signer)
        assert token not in repr(decision)
        assert "stamped" in repr(decision)
