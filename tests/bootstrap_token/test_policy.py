"""Trust policy and label selector semantics (Kubernetes metav1.LabelSelector)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bootstrap_token import LabelSelector, TrustPolicy


class TestLabelSelector:
    @pytest.mark.parametrize(
        ("selector", "labels", "expected"),
        [
            ({}, {}, True),
            ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
            ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
            ({"matchLabels": {"a": "1"}}, None, False),
            (
                {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
                {"a": "2"},
                True,
            ),
            ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
            ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
            (
                {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
                {"a": "1"},
                False,
            ),
            ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
            ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
            (
                {
                    "matchLabels": {"a": "1"},
                    "matchExpressions": [{"key": "b", "operator": "Exists"}],
                },
                {"a": "1"},
                False,
            ),
        ],
    )
    def test_matches(
        self, selector: dict[str, object], labels: dict[str, str] | None, expected: bool
    ) -> None:
        """matchLabels and matchExpressions combine with AND, with Kubernetes operator rules."""
        assert LabelSelector.model_validate(selector).matches(labels) is expected

    @pytest.mark.parametrize(
        "expr",
        [
            {"key": "a", "operator": "In"},
            {"key": "a", "operator": "Exists", "values": ["x"]},
            {"key": "a", "operator": "Like", "values": ["x"]},
        ],
    )
    def test_invalid_requirements(self, expr: dict[str, object]) -> None:
        """Requirements whose values do not fit the operator are refused at load."""
        with pytest.raises(ValidationError):
            LabelSelector.model_validate({"matchExpressions": [expr]})


class TestTrustPolicy:
    def test_default_selects_streamspace_agents_and_trusts_nothing(self) -> None:
        """The default policy trusts no namespace and selects the k8s-agent component label."""
        policy = TrustPolicy()
        assert policy.untrusted_reason("streamspace", "default") == "namespace_not_trusted"
        assert policy.selects({"app.kubernetes.io/component": "k8s-agent"})
        assert not policy.selects({"app": "web"})

    def test_service_account_pairs_validated(self) -> None:
        """Allow-list entries must be 'namespace:serviceaccount'."""
        with pytest.raises(ValidationError, match="namespace:serviceaccount"):
            TrustPolicy.model_validate({"serviceAccounts": ["streamspace"]})

    def test_forbids_unknown_keys(self) -> None:
        """A misspelt key is a configuration error, not silently ignored."""
        with pytest.raises(ValidationError, match="namespace"):
            TrustPolicy.model_validate({"namespace": ["x"]})


class TestNamespaceNames:
    @pytest.mark.parametrize(
        "name",
        ["Bad_NS", "Streamspace", "-agents", "agents-", "a.b", "", "x" * 64, "agents ", "ägents"],
    )
    def test_what_is_not_a_dns1123_label_is_refused(self, name: str) -> None:
        """A name Kubernetes would never give a namespace can never match: a typo, refused at
        start with the key named (RFC 1123 label, Kubernetes "Object Names and IDs")."""
        with pytest.raises(ValidationError, match="not a namespace name") as raised:
            TrustPolicy.model_validate({"namespaces": ["streamspace", name]})
        assert raised.value.errors()[0]["loc"] == ("namespaces",)

    @pytest.mark.parametrize("name", ["streamspace", "a", "agents-2", "x" * 63, "0team"])
    def test_labels_are_accepted(self, name: str) -> None:
        assert TrustPolicy.model_validate({"namespaces": [name]}).namespaces == {name}

    @pytest.mark.parametrize(
        "pair", ["Bad_NS:agent", "streamspace:Agent", "streamspace:agent_1", "streamspace:"]
    )
    def test_service_account_pairs_are_kubernetes_names(self, pair: str) -> None:
        with pytest.raises(ValidationError) as raised:
            TrustPolicy.model_validate({"serviceAccounts": [pair]})
        assert raised.value.errors()[0]["loc"] == ("serviceAccounts",)

    def test_a_dotted_service_account_name_is_a_subdomain(self) -> None:
        policy = TrustPolicy.model_validate({"serviceAccounts": ["streamspace:agent.v2"]})
        assert policy.service_accounts == {"streamspace:agent.v2"}


class TestSensitiveNamespaces:
    @pytest.mark.parametrize("name", ["kube-system", "kube-public", "kube-node-lease"])
    def test_system_namespaces_are_refused_naming_the_key(self, name: str) -> None:
        with pytest.raises(ValidationError, match="allowSensitiveNamespaces") as raised:
            TrustPolicy.model_validate({"namespaces": ["streamspace", name]})
        assert name in str(raised.value)

    def test_a_system_namespace_listed_twice_is_trusted(self) -> None:
        policy = TrustPolicy.model_validate(
            {"namespaces": ["kube-system"], "allowSensitiveNamespaces": ["kube-system"]}
        )
        assert policy.untrusted_reason("kube-system", "agent") is None

    def test_the_release_namespace_needs_the_same_allowance(self) -> None:
        policy = TrustPolicy.model_validate({"namespaces": ["agent-bootstrap", "streamspace"]})
        reason = policy.release_namespace_error("agent-bootstrap")
        assert reason is not None
        assert "trust.allowSensitiveNamespaces" in reason
        assert policy.release_namespace_error("elsewhere") is None
        assert policy.release_namespace_error(None) is None
        allowed = TrustPolicy.model_validate(
            {"namespaces": ["agent-bootstrap"], "allowSensitiveNamespaces": ["agent-bootstrap"]}
        )
        assert allowed.release_namespace_error("agent-bootstrap") is None
