"""Value sets the chart is rendered with, and the rendered objects of each (once per session).

Sets (the issue's list, plus the certs-tooling path):

* ``defaults``: no values at all;
* ``auto-approve``: auto-approval on for ``streamspace``, caBundle from certs-tooling;
* ``postgresql-3-replicas``: three approvers on a PostgreSQL URL from a Secret;
* ``cert-manager``: serving certificates, caBundle injection and a private CA by cert-manager;
* ``certs-tooling-keys``: every Secret and the JWKS created from a real ``certs-tooling init``
  folder (``--set-file``), the caBundle as PEM;
* ``apiserver-client-ca``: auto-approval on, and the webhook requires the API server's client
  certificate (``webhook.apiServerClientCA``, a Secret key other than the default);
* ``everything``: every feature on at once (controlPlane streamspace over https with a CA, agent
  client certificates required at the gate, the agent proxy);
* ``streamspace``: ``controlPlane.type streamspace`` (the approver as StreamSpace's agents' gate,
  StreamSpace's records following its decisions), with env injection and auto-approval for
  ``streamspace``, and both NetworkPolicies in StreamSpace's namespace;
* ``kustomize-base``: the values the kustomize base is generated from
  (manifests/kustomize/base/chart-values.yaml).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from tests.conftest import Pki
from tests.manifests import chart

HELM_MISSING = importlib.util.find_spec("helm_python") is None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Without helm-python-sdk nothing here can render: skip, saying why (it is a test
    dependency, so this only happens in an environment installed without the test extra)."""
    if not HELM_MISSING:
        return
    skip = pytest.mark.skip(
        reason="helm-python-sdk is not installed (pip install -e '.[test]'): it renders the chart"
    )
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


KUSTOMIZE_VALUES = chart.KUSTOMIZE_DIR / "base" / "chart-values.yaml"

TRUSTED = "streamspace"
SECOND_TRUSTED = "render-farm"

#: controlPlane of the ``streamspace`` value set: StreamSpace's API as its chart serves it
#: (release ``streamspace`` in namespace ``streamspace``), the two Secrets the approver needs.
STREAMSPACE_CONTROL_PLANE: dict[str, Any] = {
    "type": "streamspace",
    "budgetSeconds": 6,
    "syncIntervalSeconds": 15,
    "streamspace": {
        "url": "http://streamspace-api.streamspace.svc:8000",
        "bootstrapKey": {"existingSecret": "streamspace-agent-bootstrap-key"},
        "admin": {
            "existingSecret": "streamspace-approver-admin",
            "usernameKey": "user",
            "passwordKey": "pass",
        },
        "networkPolicy": {"allowApprover": True, "restrictAgents": True},
    },
}

#: webhook.apiServerClientCA of the ``apiserver-client-ca`` value set.
APISERVER_CLIENT_CA = {"existingSecret": "kube-apiserver-client-ca", "key": "client-ca.pem"}

VALUE_SET_NAMES = [
    "defaults",
    "auto-approve",
    "postgresql-3-replicas",
    "cert-manager",
    "certs-tooling-keys",
    "apiserver-client-ca",
    "everything",
    "streamspace",
    "kustomize-base",
]


@dataclass(frozen=True)
class Case:
    """One value set and what the chart rendered from it."""

    name: str
    values: dict[str, Any]  # as given to Helm
    effective: dict[str, Any]  # merged over the chart's values.yaml
    objects: list[dict[str, Any]]

    @property
    def trusted(self) -> list[str]:
        return list(self.effective["agents"]["autoApprove"]["namespaces"])


def _auto_approve(namespaces: list[str]) -> dict[str, Any]:
    return {"agents": {"autoApprove": {"enabled": True, "namespaces": namespaces}}}


def build_value_sets(pki: Pki) -> dict[str, dict[str, Any]]:
    ca_bundle = pki.layout.ca_bundle
    keys = {
        "create": True,
        "signingKey": pki.signing_key.read_text(),
        "jwks": pki.jwks.read_text(),
        "webhookTls": {"crt": pki.webhook_cert.read_text(), "key": pki.webhook_key.read_text()},
        "approverTls": {
            "crt": pki.approver_cert.read_text(),
            "key": pki.approver_key.read_text(),
        },
    }
    postgres = {
        "approver": {
            "replicas": 3,
            "database": {
                "type": "postgresql",
                "postgresql": {"existingSecret": "agent-bootstrap-db", "secretKey": "url"},
            },
        }
    }
    everything = chart.merge(
        chart.merge(_auto_approve([TRUSTED, SECOND_TRUSTED]), postgres),
        {
            "createNamespace": True,
            "clusterName": "prod-eu-1",
            "image": {
                "repository": "registry.example/agent-bootstrap",
                "digest": "sha256:" + "a" * 64,
            },
            "imagePullSecrets": [{"name": "regcred"}],
            "agents": {
                "autoApprove": {
                    "requireApiKey": True,
                    "maxActivePerNamespace": 50,
                    "maxActivePerOwner": 20,
                },
                "serviceAccounts": [f"{TRUSTED}:streamspace-agent", f"{SECOND_TRUSTED}:agent"],
                "podSelector": {
                    "matchLabels": {"app.kubernetes.io/component": "k8s-agent"},
                    "matchExpressions": [
                        {"key": "tier", "operator": "NotIn", "values": ["debug"]},
                    ],
                },
                "tokenTtlSeconds": 900,
                "injectEnv": {
                    "enabled": True,
                    "containers": ["k8s-agent"],
                    "variable": "AGENT_API_KEY",
                },
                "agentProxy": {"enabled": True},
                "agentIdPrefix": "k8s-prod-cluster",
                "serviceAccountTokens": {
                    "enabled": True,
                    "mode": "tokenreview",
                    "allow": [f"{TRUSTED}:streamspace-agent"],
                },
            },
            "agentCertificates": {
                "enabled": True,
                "secretName": "agent-bootstrap-agent-ca-prod",
                "lifetimeSeconds": 3600,
                "maxLivePerAgent": 3,
                "requireAtGate": True,
                "crlValiditySeconds": 300,
            },
            "token": {"leewaySeconds": 10, "extraClusters": ["prod-us-1", "prod-eu-1"]},
            "webhook": {
                "workers": 2,
                "timeoutSeconds": 3,
                "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "podAnnotations": {"example.com/team": "platform"},
                "priorityClassName": "system-cluster-critical",
                "apiServerClientCA": {"existingSecret": "agent-bootstrap-apiserver-client-ca"},
            },
            "approver": {
                "adminTokens": {"existingSecret": "agent-bootstrap-admin", "key": "tokens"},
                "reviewTokens": {"existingSecret": "streamspace-review", "key": "token"},
                "pendingTtlSeconds": 3600,
                "apiKeys": {"existingSecret": "agent-bootstrap-api-keys"},
            },
            "certManager": {
                "enabled": True,
                "issuerRef": {
                    "name": "corp-ca",
                    "kind": "ClusterIssuer",
                    "group": "cert-manager.io",
                },
            },
            "keys": {
                "create": True,
                "signingKey": pki.signing_key.read_text(),
                "jwks": pki.jwks.read_text(),
            },
            "networkPolicy": {
                "apiServer": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                "apiServerEgress": {"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [6443]},
                "approver": {
                    "namespaces": ["streamspace-control"],
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "ops"}
                            },
                            "podSelector": {"matchLabels": {"app": "admin-cli"}},
                        }
                    ],
                },
                "metrics": {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                            }
                        }
                    ]
                },
                "postgresql": {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "port": 5432},
            },
            "metrics": {
                "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
                "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Kubernetes"}},
            },
            "controlPlane": chart.merge(
                STREAMSPACE_CONTROL_PLANE,
                {
                    "streamspace": {
                        "url": "https://streamspace-api.streamspace.svc:8443",
                        "caBundle": {"existingConfigMap": "streamspace-api-ca", "key": "ca.pem"},
                        "forwardClientAddress": False,
                        "apiPort": 8443,
                        "networkPolicy": {
                            "kubeApiServer": {
                                "to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                                "ports": [6443],
                            }
                        },
                    }
                },
            ),
        },
    )
    return {
        "defaults": {},
        "auto-approve": chart.merge(
            _auto_approve([TRUSTED]), {"tls": {"caBundle": chart.b64(ca_bundle.read_bytes())}}
        ),
        "postgresql-3-replicas": chart.merge(_auto_approve([TRUSTED, SECOND_TRUSTED]), postgres),
        "cert-manager": chart.merge(_auto_approve([TRUSTED]), {"certManager": {"enabled": True}}),
        "certs-tooling-keys": chart.merge(
            _auto_approve([TRUSTED]),
            {"keys": keys, "tls": {"caBundlePem": ca_bundle.read_text()}},
        ),
        "apiserver-client-ca": chart.merge(
            _auto_approve([TRUSTED]), {"webhook": {"apiServerClientCA": APISERVER_CLIENT_CA}}
        ),
        "everything": everything,
        "streamspace": chart.merge(
            _auto_approve([TRUSTED]),
            {
                "agents": {
                    "injectEnv": {"enabled": True},
                    "agentIdPrefix": "k8s-prod-cluster",
                },
                "approver": {"kubernetes": {"enabled": True}},
                "controlPlane": STREAMSPACE_CONTROL_PLANE,
            },
        ),
        "kustomize-base": yaml.safe_load(KUSTOMIZE_VALUES.read_text()),
    }


@pytest.fixture(scope="session")
def chart_defaults() -> dict[str, Any]:
    # values.yaml is a YAML mapping; safe_load is typed as Any.
    return cast(dict[str, Any], yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text()))


@pytest.fixture(scope="session")
def cases(pki: Pki, chart_defaults: dict[str, Any]) -> dict[str, Case]:
    """Every value set, rendered once."""
    sets = build_value_sets(pki)
    assert list(sets) == VALUE_SET_NAMES
    return {
        name: Case(
            name=name,
            values=values,
            effective=chart.merge(chart_defaults, values),
            objects=chart.render(values),
        )
        for name, values in sets.items()
    }


@pytest.fixture(params=VALUE_SET_NAMES)
def case(request: pytest.FixtureRequest, cases: dict[str, Case]) -> Case:
    """Each value set in turn."""
    return cases[request.param]
