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
