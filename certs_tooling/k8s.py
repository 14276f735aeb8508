"""``certs-tooling k8s-manifests``: the folder as Kubernetes objects for ``kubectl apply -f -``.

Objects (core/v1, Kubernetes "Secrets" and "ConfigMaps" concept pages):

* the webhook's ``kubernetes.io/tls`` Secret: ``tls.crt``, ``tls.key`` and the active Ed25519
  token signing key as ``signing.key`` (a TLS Secret may carry extra keys);
* the approver's ``kubernetes.io/tls`` Secret: ``tls.crt``, ``tls.key``;
* a ConfigMap with ``jwks.json`` (public keys only) for the approver;
* only when the folder holds an agent CA (``certs-tooling agent-ca``): the approver's ``Opaque``
  Secret with ``ca.crt`` (``agent-ca.crt``), ``ca.key`` (``agent-ca.key``) and ``ca-bundle.crt``
  (``agent-ca-bundle.crt``), the CA it signs agents' client certificates with and what its gate
  trusts;
* the ``caBundle`` of the MutatingWebhookConfiguration: base64 of ``ca-bundle.crt``
  (``admissionregistration.k8s.io/v1`` ``clientConfig.caBundle``), as a leading comment or alone.

Secret ``data`` values are base64 (what ``kubectl create secret tls`` writes). Mounted Secret
and ConfigMap volumes are updated by the kubelet with one atomic symlink swap, so a pod that
re-reads its files picks up new material without a restart and never sees half of it.
Pure: bytes in, YAML text out.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import yaml

# Object names of Kubernetes Secrets, not secret values:
DEFAULT_WEBHOOK_SECRET = "agent-bootstrap-webhook-tls"  # noqa: S105
DEFAULT_APPROVER_SECRET = "agent-bootstrap-approver-tls"  # noqa: S105
DEFAULT_JWKS_CONFIGMAP = "agent-bootstrap-jwks"
DEFAULT_AGENT_CA_SECRET = "agent-bootstrap-agent-ca"  # noqa: S105
MANAGED_BY = "certs-tooling"


@dataclass(frozen=True, slots=True)
class AgentCa:
    """The agent CA files (``agent-ca.crt``, ``agent-ca.key``, ``agent-ca-bundle.crt``)."""

    cert: bytes
    key: bytes = field(repr=False)
    bundle: bytes


@dataclass(frozen=True, slots=True)
class Material:
    """The folder's contents that go into the cluster, as PEM/JSON bytes (``agent_ca``: None
    when the folder holds no agent CA)."""

    ca_bundle: bytes
    webhook_cert: bytes
    webhook_key: bytes = field(repr=False)
    signing_key: bytes = field(repr=False)
    approver_cert: bytes
    approver_key: bytes = field(repr=False)
    jwks: bytes
    agent_ca: AgentCa | None = None


@dataclass(frozen=True, slots=True)
class Names:
    """Namespace and object names."""

    namespace: str
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    approver_secret: str = DEFAULT_APPROVER_SECRET
    jwks_configmap: str = DEFAULT_JWKS_CONFIGMAP
    agent_ca_secret: str = DEFAULT_AGENT_CA_SECRET


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def ca_bundle_b64(ca_bundle: bytes) -> str:
    """``clientConfig.caBundle``: base64 (standard alphabet, one line) of the PEM bundle."""
    return _b64(ca_bundle)


def _metadata(name: str, namespace: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/name": "agent-bootstrap",
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": MANAGED_BY,
        },
    }


def tls_secret(
    name: str,
    namespace: str,
    component: str,
    *,
    cert: bytes,
    key: bytes,
    extra: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """A ``kubernetes.io/tls`` Secret: ``tls.crt``, ``tls.key``, then ``extra`` keys (a TLS
    Secret may carry more, e.g. ``signing.key`` or cert-manager's ``ca.crt``)."""
    data = {"tls.crt": _b64(cert), "tls.key": _b64(key)}
    data.update({k: _b64(v) for k, v in (extra or {}).items()})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(name, namespace, component),
        "type": "kubernetes.io/tls",
        "data": data,
    }


def signing_key_secret(name: str, namespace: str, signing_key: bytes) -> dict[str, Any]:
    """An ``Opaque`` Secret holding ``signing.key`` alone (the chart's
    ``keys.signingKeySecretName``, used when cert-manager owns the webhook's TLS Secret)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(name, namespace, "webhook"),
        "type": "Opaque",
        "data": {"signing.key": _b64(signing_key)},
    }


def jwks_configmap(name: str, namespace: str, jwks: bytes) -> dict[str, Any]:
    """The approver's ConfigMap with ``jwks.json`` (public keys only)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(name, namespace, "approver"),
        "data": {"jwks.json": jwks.decode("utf-8")},
    }


def agent_ca_secret(name: str, namespace: str, agent_ca: AgentCa) -> dict[str, Any]:
    """The approver's ``Opaque`` Secret with the agent CA: ``ca.crt``, ``ca.key`` (signs agent
    client certificates) and ``ca-bundle.crt`` (what its gate trusts: the current agent CA, plus
    the previous one during a rotation)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(name, namespace, "approver"),
        "type": "Opaque",
        "data": {
            "ca.crt": _b64(agent_ca.cert),
            "ca.key": _b64(agent_ca.key),
            "ca-bundle.crt": _b64(agent_ca.bundle),
        },
    }


def manifests(material: Material, names: Names) -> list[dict[str, Any]]:
    """The Secret, Secret and ConfigMap objects, in that order, then the agent CA Secret when
    ``material`` holds an agent CA."""
    webhook_secret = tls_secret(
        names.webhook_secret,
        names.namespace,
        "webhook",
        cert=material.webhook_cert,
        key=material.webhook_key,
        extra={"signing.key": material.signing_key},
    )
    approver_secret = tls_secret(
        names.approver_secret,
        names.namespace,
        "approver",
        cert=material.approver_cert,
        key=material.approver_key,
    )
    jwks = jwks_configmap(names.jwks_configmap, names.namespace, material.jwks)
    objects = [webhook_secret, approver_secret, jwks]
    if material.agent_ca is not None:
        objects.append(agent_ca_secret(names.agent_ca_secret, names.namespace, material.agent_ca))
    return objects


class _Dumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings (the JWKS) as literal blocks, for readable diffs."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(material: Material, names: Names) -> str:
    """Multi-document YAML (``---`` before each object), preceded by a comment carrying the
    base64 caBundle, ready for ``kubectl apply -f -``."""
    header = (
        "# caBundle for the MutatingWebhookConfiguration (clientConfig.caBundle):\n"
        f"# {ca_bundle_b64(material.ca_bundle)}\n"
    )
    body = yaml.dump_all(
        manifests(material, names),
        Dumper=_Dumper,
        sort_keys=False,
        explicit_start=True,
        default_flow_style=False,
    )
    return header + body
