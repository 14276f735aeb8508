"""AdmissionReview parsing: real payloads in, typed fields out, malformed bodies refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.payloads import KUBECTL_REVIEW, REPLICASET_REVIEW, load_json, streamspace_agent_review
from webhook.errors import MalformedReview
from webhook.review import parse_pod, parse_review


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


class TestParseReview:
    def test_replicaset_fixture(self) -> None:
        """The captured ReplicaSet review parses with its uid, namespace and generateName pod."""
        review = parse_review(body(load_json(REPLICASET_REVIEW)))
        request = review.request
        assert review.api_version == "admission.k8s.io/v1beta1"
        assert request.uid == "6e397dab-317d-11e9-b50f-080027bbd2ff"
        assert request.namespace == "default"
        assert request.operation == "CREATE"
        assert request.name is None
        assert request.username == ("system:serviceaccount:kube-system:replicaset-controller")
        assert request.is_pod_create is True
        assert request.is_dry_run is False
        assert request.object is not None
        assert request.object["metadata"]["generateName"] == "echo-server-deployment-849b87649d-"

    def test_kubectl_fixture_ignores_unknown_fields(self) -> None:
        """requestKind, options and managedFields (not typed here) do not stop parsing."""
        raw = load_json(KUBECTL_REVIEW)
        raw["request"]["someFutureField"] = {"x": 1}
        raw["futureEnvelopeField"] = True
        request = parse_review(body(raw)).request
        assert request.name == "test-pod01"
        assert request.namespace == "test1"
        assert request.kind.kind == "Pod"
        assert request.resource.resource == "pods"

    @pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
    def test_both_api_versions(self, api_version: str) -> None:
        """v1 and v1beta1 are both accepted and remembered for the answer."""
        review = parse_review(body(streamspace_agent_review(api_version=api_version, uid="u-1")))
        assert review.api_version == api_version
        assert review.request.uid == "u-1"
        assert review.request.namespace == "streamspace"

    @pytest.mark.parametrize(("dry_run", "expected"), [(True, True), (False, False), (None, False)])
    def test_dry_run(self, dry_run: bool | None, expected: bool) -> None:
        """``dryRun`` true, false or null reads as a bool."""
        raw = streamspace_agent_review()
        raw["request"]["dryRun"] = dry_run
        assert parse_review(body(raw)).request.is_dry_run is expected


def _mutate(change: str) -> bytes:
    raw = streamspace_agent_review()
    match change:
        case "api_version":
            raw["apiVersion"] = "admission.k8s.io/v2"
        case "kind":
            raw["kind"] = "TokenReview"
        case "no_request":
            del raw["request"]
        case "null_request":
            raw["request"] = None
        case "no_uid":
            del raw["request"]["uid"]
        case "empty_uid":
            raw["request"]["uid"] = ""
        case "uid_not_string":
            raw["request"]["uid"] = 42
        case "no_operation":
            del raw["request"]["operation"]
        case "kind_not_map":
            raw["request"]["kind"] = "Pod"
        case "resource_missing":
            del raw["request"]["resource"]
        case "object_list":
            raw["request"]["object"] = []
        case "dry_run_string":
            raw["request"]["dryRun"] = "yes"
        case "namespace_int":
            raw["request"]["namespace"] = 3
        case "user_info_list":
            raw["request"]["userInfo"] = []
    return body(raw)


class TestMalformedReview:
    @pytest.mark.parametrize(
        ("raw", "reason", "message"),
        [
            (b"", "empty_body", "request body is empty"),
            (b" \n", "empty_body", "request body is empty"),
            (b"{not json", "invalid_json", "request body is not valid JSON"),
            (b"\xff\xfe", "invalid_json", "request body is not valid JSON"),
            (b"[1, 2]", "invalid_json", "request body is not a JSON object"),
            (b'"AdmissionReview"', "invalid_json", "request body is not a JSON object"),
            (_mutate("api_version"), "not_admission_review", "apiVersion"),
            (_mutate("kind"), "not_admission_review", "kind"),
            (_mutate("no_request"), "not_admission_review", "request"),
            (_mutate("null_request"), "not_admission_review", "request"),
            (_mutate("no_uid"), "not_admission_review", "request.uid"),
            (_mutate("empty_uid"), "not_admission_review", "request.uid"),
            (_mutate("uid_not_string"), "not_admission_review", "request.uid"),
            (_mutate("no_operation"), "not_admission_review", "request.operation"),
            (_mutate("kind_not_map"), "not_admission_review", "request.kind"),
            (_mutate("resource_missing"), "not_admission_review", "request.resource"),
            (_mutate("object_list"), "not_admission_review", "request.object"),
            (_mutate("dry_run_string"), "not_admission_review", "request.dryRun"),
            (_mutate("namespace_int"), "not_admission_review", "request.namespace"),
            (_mutate("user_info_list"), "not_admission_review", "request.userInfo"),
            (b"\xef\xbb\xbf{}", "invalid_json", "not valid JSON"),
            (b'{"a": NaN}', "invalid_json", "not valid JSON"),
        ],
        ids=[
            "empty",
            "whitespace",
            "not-json",
            "not-utf8",
            "array",
            "string",
            "api-version",
            "kind",
            "no-request",
            "null-request",
            "no-uid",
            "empty-uid",
            "uid-not-string",
            "no-operation",
            "kind-not-map",
            "resource-missing",
            "object-list",
            "dry-run-string",
            "namespace-int",
            "user-info-list",
            "utf8-bom",
            "nan",
        ],
    )
    def test_refused_with_reason(self, raw: bytes, reason: str, message: str) -> None:
        """Each malformed body is refused with a stable reason and a message naming the field."""
        with pytest.raises(MalformedReview) as info:
            parse_review(raw)
        assert info.value.reason == reason
        assert message in info.value.message

    def test_message_does_not_echo_values(self) -> None:
        """The message names fields, not what was sent in them."""
        raw = streamspace_agent_review()
        raw["apiVersion"] = "secret-looking-value"
        with pytest.raises(MalformedReview) as info:
            parse_review(body(raw))
        assert "secret-looking-value" not in str(info.value)


class TestIsPodCreate:
    @pytest.mark.parametrize(
        ("changes", "expected"),
        [
            ({}, True),
            ({"operation": "UPDATE"}, False),
            ({"operation": "DELETE"}, False),
            ({"kind": {"group": "apps", "version": "v1", "kind": "Deployment"}}, False),
            ({"kind": {"group": "example.com", "version": "v1", "kind": "Pod"}}, False),
            (
                {
                    "kind": {"group": "policy", "version": "v1", "kind": "Eviction"},
                    "subResource": "eviction",
                },
                False,
            ),
            ({"subResource": "status"}, False),
        ],
        ids=["pod-create", "update", "delete", "deployment", "foreign-pod", "eviction", "status"],
    )
    def test_only_core_pod_create(self, changes: dict[str, Any], expected: bool) -> None:
        """Only a CREATE of a core/v1 Pod itself counts, no subresource and no other group."""
        raw = streamspace_agent_review()
        raw["request"].update(changes)
        assert parse_review(body(raw)).request.is_pod_create is expected


class TestParsePod:
    def test_streamspace_pod(self) -> None:
        """The StreamSpace pod's name, labels, service account and controller are typed."""
        pod = parse_pod(streamspace_agent_review(rs_hash="abc12")["request"]["object"])
        assert pod.name is None
        assert pod.generate_name == "streamspace-k8s-agent-abc12-"
        assert pod.labels["app.kubernetes.io/component"] == "k8s-agent"
        assert pod.has_annotations is False
        assert pod.service_account_name == "streamspace-agent"
        assert pod.controller is not None
        assert (pod.controller.kind, pod.controller.name) == (
            "ReplicaSet",
            "streamspace-k8s-agent-abc12",
        )

    def test_annotations_map_present(self) -> None:
        """An annotation map (even empty) is recorded as present; null is not."""
        assert parse_pod({"metadata": {"annotations": {}}}).has_annotations is True
        assert parse_pod({"metadata": {"annotations": None}}).has_annotations is False

    def test_empty_object(self) -> None:
        """A pod object without metadata or spec parses to an empty view."""
        pod = parse_pod({})
        assert (pod.name, pod.generate_name, pod.service_account_name, pod.controller) == (
            None,
            None,
            None,
            None,
        )
        assert dict(pod.labels) == {}

    def test_first_controller_wins(self) -> None:
        """Only an owner reference with controller: true is the controller."""
        refs = [
            {"kind": "ConfigMap", "name": "c", "uid": "u1"},
            {"kind": "ReplicaSet", "name": "rs", "uid": "u2", "controller": True},
        ]
        controller = parse_pod({"metadata": {"ownerReferences": refs}}).controller
        assert controller is not None
        assert (controller.kind, controller.name, controller.uid) == ("ReplicaSet", "rs", "u2")

    def test_no_controller(self) -> None:
        """A pod whose owner references are not controllers has no controller."""
        raw = load_json(KUBECTL_REVIEW)["request"]["object"]
        raw["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u"}
        ]
        assert parse_pod(raw).controller is None

    @pytest.mark.parametrize(
        ("obj", "field"),
        [
            ({"metadata": {"labels": ["a"]}}, "metadata.labels"),
            ({"metadata": {"annotations": {"k": 1}}}, "metadata.annotations.k"),
            ({"metadata": {"ownerReferences": [{"kind": "ReplicaSet"}]}}, "ownerReferences"),
            ({"spec": {"serviceAccountName": 7}}, "spec.serviceAccountName"),
            ({"metadata": "x"}, "metadata"),
            ({"spec": []}, "spec"),
            ({"metadata": {"name": 5}}, "metadata.name"),
            ({"metadata": {"generateName": ["a"]}}, "metadata.generateName"),
            ({"metadata": {"ownerReferences": {"kind": "ReplicaSet"}}}, "ownerReferences"),
            ({"metadata": {"ownerReferences": ["x"]}}, "ownerReferences.0"),
            (
                {
                    "metadata": {
                        "ownerReferences": [
                            {"kind": "R", "name": "n", "uid": "u", "controller": "yes"}
                        ]
                    }
                },
                "ownerReferences.0.controller",
            ),
        ],
        ids=[
            "labels-list",
            "annotation-int",
            "owner-incomplete",
            "sa-int",
            "metadata-string",
            "spec-list",
            "name-int",
            "generate-name-list",
            "owners-map",
            "owner-string",
            "controller-string",
        ],
    )
    def test_malformed_pod(self, obj: dict[str, Any], field: str) -> None:
        """A pod object with wrongly typed read fields is refused as ``malformed_pod``."""
        with pytest.raises(MalformedReview) as info:
            parse_pod(obj)
        assert info.value.reason == "malformed_pod"
        assert field in info.value.message
