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
    allowSensitiveNamespaces: []                # see below

Every namespace is a DNS-1123 label (what Kubernetes accepts as a namespace name: at most 63
characters of ``a-z``, ``0-9`` and ``-``, starting and ending alphanumeric; Kubernetes "Object
Names and IDs"); a ``serviceAccounts`` entry is such a label, ``:``, and a DNS-1123 subdomain.
A name that is not one can never match a pod, so it is a typo the service refuses at start.

The system namespaces (:data:`SYSTEM_NAMESPACES`) and the namespace the services run in (their
``releaseNamespace``) are refused in ``namespaces`` unless ``allowSensitiveNamespaces`` lists
them too: trusting them auto-approves any matching pod that anyone able to create pods there
makes, and the webhook's own configuration never selects them (a broken webhook must never
stand in the way of the pods that repair it), so a token could not even be minted there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_AGENT_LABELS: dict[str, str] = {"app.kubernetes.io/component": "k8s-agent"}

#: Kubernetes' own namespaces, never trusted unless ``allowSensitiveNamespaces`` lists them.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})

#: A DNS-1123 label (k8s.io/apimachinery validation.IsDNS1123Label): a namespace name.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
#: A DNS-1123 subdomain (validation.IsDNS1123Subdomain): a service account name.
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

#: Where a pod reads its own namespace (the service account volume Kubernetes mounts).
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def is_dns1123_label(name: str) -> bool:
    """True when ``name`` is a valid namespace name (at most 63 characters, RFC 1123 label)."""
    return len(name) <= 63 and _DNS1123_LABEL.fullmatch(name) is not None


def is_dns1123_subdomain(name: str) -> bool:
    """True when ``name`` is a valid service account name (at most 253 characters)."""
    return len(name) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(name) is not None


def in_cluster_namespace() -> str | None:
    """The namespace this process's pod runs in, from the service account volume; None outside
    a cluster (or when the volume is not mounted)."""
    try:
        name = IN_CLUSTER_NAMESPACE_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return name or None


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

    allow_sensitive_namespaces: frozenset[str] = Field(
        default=frozenset(),
        alias="allowSensitiveNamespaces",
        description="System namespaces (kube-system, kube-public, kube-node-lease) or the "
        "services' own namespace that 'namespaces' may list after all. Default: none.",
    )

    @field_validator("namespaces", "allow_sensitive_namespaces")
    @classmethod
    def _labels(cls, value: frozenset[str]) -> frozenset[str]:
        for name in sorted(value):
            if not is_dns1123_label(name):
                raise ValueError(
                    f"{name!r} is not a namespace name (a DNS-1123 label: at most 63 of "
                    "a-z, 0-9 and '-', starting and ending with a letter or digit)"
                )
        return value

    @field_validator("service_accounts")
    @classmethod
    def _pairs(cls, value: frozenset[str]) -> frozenset[str]:
        for pair in sorted(value):
            ns, sep, sa = pair.partition(":")
            if not sep or not ns or not sa or ":" in sa:
                raise ValueError(f"{pair!r} is not of the form 'namespace:serviceaccount'")
            if not is_dns1123_label(ns) or not is_dns1123_subdomain(sa):
                raise ValueError(
                    f"{pair!r}: the namespace must be a DNS-1123 label and the service account "
                    "a DNS-1123 subdomain"
                )
        return value

    @model_validator(mode="after")
    def _no_system_namespace(self) -> Self:
        refused = sorted((self.namespaces & SYSTEM_NAMESPACES) - self.allow_sensitive_namespaces)
        if refused:
            raise ValueError(
                f"namespaces lists the system namespace {refused[0]!r}: trusting it "
                "auto-approves any agent-labelled pod created there; list it in "
                "allowSensitiveNamespaces as well to trust it anyway"
            )
        return self

    def release_namespace_error(self, release_namespace: str | None) -> str | None:
        """Why ``namespaces`` may not list ``release_namespace`` (the namespace the services
        run in), or None. Each service's settings call this with their ``releaseNamespace``."""
        if (
            release_namespace
            and release_namespace in self.namespaces
            and release_namespace not in self.allow_sensitive_namespaces
        ):
            return (
                f"trust.namespaces lists {release_namespace!r}, the namespace agent-bootstrap "
                "runs in (releaseNamespace): whoever may create pods there can mount its "
                "Secrets, and the webhook never selects it; list it in "
                "trust.allowSensitiveNamespaces as well to trust it anyway"
            )
        return None

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
