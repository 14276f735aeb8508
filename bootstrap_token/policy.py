"""The trust policy: which pods the cluster vouches for. One config shape for both services.

The webhook evaluates it at admission time (defence in depth behind the
MutatingWebhookConfiguration's ``namespaceSelector``/``objectSelector``); the approver
re-evaluates the namespace and service-account parts at verification time, so removing a
namespace from trust stops new auto-approvals at once.

Config shape (YAML/JSON, camelCase)::

    namespaces: ["streamspace"]                 # trusted namespaces, by exact name
    serviceAccounts: ["streamspace:streamspace-agent"]   # optional allow-list; empty = any
    podSelector:                                # metav1.LabelSelector semantics
      matchLabels: {app.kubernetes.io/component: k8s-agent}
      matchExpressions: [{key: tier, operator: In, values: [agents]}]
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_AGENT_LABELS: dict[str, str] = {"app.kubernetes.io/component": "k8s-agent"}


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(_Config):
    """One ``matchExpressions`` entry (Kubernetes ``metav1.LabelSelectorRequirement``)."""

    key: str = Field(min_length=1)
    operator: SelectorOperator
    values: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _values_fit_operator(self) -> Self:
        needs_values = self.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN)
        if needs_values and not self.values:
            raise ValueError(f"operator {self.operator} needs a non-empty 'values'")
        if not needs_values and self.values:
            raise ValueError(f"operator {self.operator} takes no 'values'")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes semantics: ``NotIn`` and ``DoesNotExist`` match a pod without the key."""
        present = self.key in labels
        match self.operator:
            case SelectorOperator.IN:
                return present and labels[self.key] in self.values
            case SelectorOperator.NOT_IN:
                return not present or labels[self.key] not in self.values
            case SelectorOperator.EXISTS:
                return present
            case SelectorOperator.DOES_NOT_EXIST:
                return not present


class LabelSelector(_Config):
    """``metav1.LabelSelector``: all ``matchLabels`` and all ``matchExpressions`` must hold.

    An empty selector matches every pod (Kubernetes "Labels and Selectors" documentation).
    """

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: tuple[LabelSelectorRequirement, ...] = Field(
        default=(), alias="matchExpressions"
    )

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            req.matches(labels) for req in self.match_expressions
        )


class TrustPolicy(_Config):
    """Which namespaces, service accounts and pods are trusted for auto-approval."""

    namespaces: frozenset[str] = Field(
        default=frozenset(),
        description="Trusted namespaces by exact name. Empty: nothing is trusted.",
    )
    service_accounts: frozenset[str] = Field(
        default=frozenset(),
        alias="serviceAccounts",
        description="Optional allow-list of 'namespace:serviceaccount'. Empty: any account "
        "of a trusted namespace.",
    )
    pod_selector: LabelSelector = Field(
        default_factory=lambda: LabelSelector(match_labels=DEFAULT_AGENT_LABELS),
        alias="podSelector",
        description="Which pods are agents. Default: app.kubernetes.io/component=k8s-agent.",
    )

    @field_validator("service_accounts")
    @classmethod
    def _pairs(cls, value: frozenset[str]) -> frozenset[str]:
        for pair in value:
            ns, sep, sa = pair.partition(":")
            if not sep or not ns or not sa or ":" in sa:
                raise ValueError(f"{pair!r} is not of the form 'namespace:serviceaccount'")
        return value

    def untrusted_reason(self, namespace: str, service_account: str) -> str | None:
        """None when ``namespace``/``service_account`` are trusted, else a reason code:
        ``namespace_not_trusted`` or ``service_account_not_allowed``."""
        if namespace not in self.namespaces:
            return "namespace_not_trusted"
        if self.service_accounts and f"{namespace}:{service_account}" not in self.service_accounts:
            return "service_account_not_allowed"
        return None

    def selects(self, labels: Mapping[str, str] | None) -> bool:
        """True when a pod with ``labels`` is an agent pod under ``podSelector``."""
        return self.pod_selector.matches(labels)
