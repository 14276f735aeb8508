"""The ValidatingAdmissionPolicy's CEL, evaluated against sample admission requests.

The rendered policy's ``variables`` and ``validations`` are evaluated in order with
``cel-python`` (``celpy``), the way the API server does: ``object``, ``oldObject`` (null on
CREATE) and ``request`` bound to the request's values, ``variables.<name>`` to the variables
evaluated so far; a request is admitted when every validation is true. Requests are built
from StreamSpace's real agent pod template.

cel-python implements the CEL specification (macros, ``has()``, ``in``, maps, lists), which is
all the policy uses: no Kubernetes CEL extension library functions, so the evaluation here is
the one the API server performs.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.manifests import chart
from tests.manifests.conftest import SECOND_TRUSTED, TRUSTED

celpy = pytest.importorskip(
    "celpy", reason="cel-python is not installed (pip install -e '.[test]'): no CEL evaluator"
)

KEY = "agents.streamspace.io/bootstrap-token"
TOKEN = "eyJhbGciOiJFZERTQSJ9.e30.c2ln"  # shape only: the policy never reads the value
OTHER = "eyJhbGciOiJFZERTQSJ9.e30.b3RoZXI"


class Policy:
    """A rendered ValidatingAdmissionPolicy, ready to evaluate."""

    def __init__(self, obj: dict[str, Any]) -> None:
        env = celpy.Environment()
        spec = obj["spec"]
        self.spec = spec
        self.variables = [
            (v["name"], env.program(env.compile(v["expression"]))) for v in spec["variables"]
        ]
        self.validations = [
            (v["message"], env.program(env.compile(v["expression"]))) for v in spec["validations"]
        ]

    def denials(
        self,
        request: dict[str, Any],
        obj: dict[str, Any],
        old: dict[str, Any] | None,
    ) -> list[str]:
        """Messages of the validations that fail (empty: admitted)."""
        activation: dict[str, Any] = {
            "request": celpy.json_to_cel(request),
            "object": celpy.json_to_cel(obj),
            "oldObject": celpy.json_to_cel(old),
        }
        values: dict[str, Any] = {}
        for name, program in self.variables:
            activation["variables"] = celpy.json_to_cel(values)
            result = program.evaluate(activation)
            assert not isinstance(result, celpy.CELEvalError), (name, result)
            values[name] = _to_json(result)
        activation["variables"] = celpy.json_to_cel(values)
        failed = []
        for message, program in self.validations:
            result = program.evaluate(activation)
            assert isinstance(result, celpy.celtypes.BoolType), (message, result)
            if not result:
                failed.append(message)
        return failed


def _to_json(value: Any) -> Any:
    types = celpy.celtypes
    if isinstance(value, types.BoolType):
        return bool(value)
    if isinstance(value, types.StringType):
        return str(value)
    return value


def _pod(namespace: str, annotations: dict[str, str] | None) -> dict[str, Any]:
    """StreamSpace's agent pod as the ReplicaSet controller creates it (no name yet)."""
    deployment = yaml.safe_load(chart.STREAMSPACE_AGENT.read_text())
    template = copy.deepcopy(deployment["spec"]["template"])
    metadata = {
        "generateName": "streamspace-k8s-agent-7d9c8b5f4-",
        "namespace": namespace,
        "labels": template["metadata"]["labels"],
    }
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def _binding(namespace: str, annotations: dict[str, str] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": "streamspace-k8s-agent-7d9c8b5f4-abcde",
        "namespace": namespace,
    }
    if annotations is not None:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": metadata,
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"},
    }


def _request(operation: str, namespace: str, sub: str | None = None) -> dict[str, Any]:
    """An AdmissionRequest as CEL sees it; subResource absent for the main resource."""
    request: dict[str, Any] = {
        "uid": "0d3bd9a1-6a38-4bd0-9f3b-7a6f3f1e2c11",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": operation,
        "namespace": namespace,
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
    }
    if sub is not None:
        request["subResource"] = sub
    return request


@pytest.fixture(scope="module")
def policy() -> Policy:
    objects = chart.render(
        {"agents": {"autoApprove": {"enabled": True, "namespaces": [TRUSTED, SECOND_TRUSTED]}}}
    )
    (vap,) = chart.of_kind(objects, "ValidatingAdmissionPolicy")
    return Policy(vap)


STAMPED = {KEY: TOKEN}
UNTRUSTED = "team-sandbox"

# (case, request, object, oldObject, admitted)
CASES = [
    (
        "UPDATE adds the annotation",
        _request("UPDATE", TRUSTED),
        _pod(TRUSTED, STAMPED),
        _pod(TRUSTED, None),
        False,
    ),
    (
        "UPDATE adds it to existing annotations",
        _request("UPDATE", TRUSTED),
        _pod(TRUSTED, {"a": "b", KEY: TOKEN}),
        _pod(TRUSTED, {"a": "b"}),
        False,
    ),
    (
        "UPDATE changes its value",
        _request("UPDATE", TRUSTED),
        _pod(TRUSTED, {KEY: OTHER}),
        _pod(TRUSTED, STAMPED),
        False,
    ),
    (
        "UPDATE empties its value",
        _request("UPDATE", TRUSTED),
        _pod(TRUSTED, {KEY: ""}),
        _pod(TRUSTED, STAMPED),
        False,
    ),
    (
        "UPDATE of pods/status adds it",
        _request("UPDATE", TRUSTED, "status"),
        _pod(TRUSTED, STAMPED),
        _pod(TRUSTED, {}),
        False,
    ),
    (
        "UPDATE adds it in an untrusted namespace",
        _request("UPDATE", UNTRUSTED),
        _pod(UNTRUSTED, STAMPED),
        _pod(UNTRUSTED, None),
        False,
    ),
    (
        "UPDATE not touching it (stamped pod)",
        _request("UPDATE", TRUSTED),
        _pod(TRUSTED, {**STAMPED, "new": "x"}),
        _pod(TRUSTED, STAMPED),
        True,
    ),
    (
        "UPDATE not touching it (unstamped pod)",
        _request("UPDATE", UNTRUSTED),
        _pod(UNTRUSTED, {"new": "x"}),
        _pod(UNTRUSTED, None),
        True,
    ),
    (
        "UPDATE of pods/status, token unchanged",
        _request("UPDATE", TRUSTED, "status"),
        _pod(TRUSTED, STAMPED),
        _pod(TRUSTED, STAMPED),
        True,
    ),
    (
        "UPDATE removes it",
        _request("UPDATE", TRUSTED),
        _pod(TRUSTED, {}),
        _pod(TRUSTED, STAMPED),
        True,
    ),
    (
        "CREATE in an untrusted namespace carrying it",
        _request("CREATE", UNTRUSTED),
        _pod(UNTRUSTED, STAMPED),
        None,
        False,
    ),
    (
        "CREATE in the release namespace carrying it",
        _request("CREATE", chart.NAMESPACE),
        _pod(chart.NAMESPACE, STAMPED),
        None,
        False,
    ),
    (
        "CREATE in an untrusted namespace without it",
        _request("CREATE", UNTRUSTED),
        _pod(UNTRUSTED, None),
        None,
        True,
    ),
    (
        "CREATE in a trusted namespace, stamped by the webhook",
        _request("CREATE", TRUSTED),
        _pod(TRUSTED, STAMPED),
        None,
        True,
    ),
    (
        "CREATE in the second trusted namespace, stamped",
        _request("CREATE", SECOND_TRUSTED),
        _pod(SECOND_TRUSTED, STAMPED),
        None,
        True,
    ),
    (
        "CREATE in a trusted namespace, unstamped",
        _request("CREATE", TRUSTED),
        _pod(TRUSTED, None),
        None,
        True,
    ),
    (
        "pods/binding CREATE carrying it (trusted)",
        _request("CREATE", TRUSTED, "binding"),
        _binding(TRUSTED, STAMPED),
        None,
        False,
    ),
    (
        "pods/binding CREATE without it",
        _request("CREATE", TRUSTED, "binding"),
        _binding(TRUSTED, None),
        None,
        True,
    ),
]


@pytest.mark.parametrize(
    ("request_", "obj", "old", "admitted"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_policy_decision(
    policy: Policy,
    request_: dict[str, Any],
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    admitted: bool,
) -> None:
    """Each sample request is admitted or denied as the issue requires."""
    denials = policy.denials(request_, obj, old)
    assert (not denials) == admitted, denials
    if not admitted:
        assert all(KEY in m for m in denials)


def test_policy_matches_pods_and_subresources_outside_kube_system(policy: Policy) -> None:
    """The policy sees CREATE and UPDATE of pods and every pods/* subresource, everywhere but
    kube-system."""
    constraints = policy.spec["matchConstraints"]
    (rule,) = constraints["resourceRules"]
    assert rule["apiGroups"] == [""]
    assert rule["apiVersions"] == ["v1"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE"}
    assert set(rule["resources"]) == {"pods", "pods/*"}
    selector = constraints["namespaceSelector"]
    assert not chart.matches(selector, chart.namespace_labels("kube-system"))
    for ns in (TRUSTED, UNTRUSTED, chart.NAMESPACE):
        assert chart.matches(selector, chart.namespace_labels(ns))
    assert "paramKind" not in policy.spec  # trusted namespaces inline: nothing can go missing


def test_binding_denies_and_audits() -> None:
    """The binding enforces the policy (Deny) and records refusals (Audit), with no params."""
    objects = chart.render()
    (vap,) = chart.of_kind(objects, "ValidatingAdmissionPolicy")
    (binding,) = chart.of_kind(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert set(binding["spec"]["validationActions"]) == {"Deny", "Audit"}
    assert "paramRef" not in binding["spec"]


def test_defaults_trust_nothing() -> None:
    """With no trusted namespace, a CREATE carrying the annotation is refused everywhere."""
    (vap,) = chart.of_kind(chart.render(), "ValidatingAdmissionPolicy")
    denials = Policy(vap).denials(_request("CREATE", TRUSTED), _pod(TRUSTED, STAMPED), None)
    assert denials


def test_annotation_key_follows_the_values() -> None:
    """A different annotation key is the one the policy protects."""
    key = "agents.example.com/token"
    (vap,) = chart.of_kind(
        chart.render({"agents": {"annotationKey": key}}), "ValidatingAdmissionPolicy"
    )
    policy = Policy(vap)
    request = _request("UPDATE", TRUSTED)
    assert policy.denials(request, _pod(TRUSTED, {key: TOKEN}), _pod(TRUSTED, None))
    assert not policy.denials(request, _pod(TRUSTED, {KEY: TOKEN}), _pod(TRUSTED, None))
