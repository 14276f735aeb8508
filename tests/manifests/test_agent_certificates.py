"""Agent client certificates (issue 16) in the chart and the kustomize overlay.

* ``agentCertificates``: the agent CA Secret (``certs-tooling k8s-manifests``' keys ``ca.crt``,
  ``ca.key``, ``ca-bundle.crt``) mounted read-only into the approver pods, and the approver's
  ``agentCertificates`` section pointing at it, loaded by the approver's own loader;
* ``agents.agentProxy``: the webhook's ``agentProxy`` section, loaded by the webhook's own
  loader, with the chart's image and this release's approver Service as defaults, and the
  sidecar it makes from them;
* off by default: nothing rendered, nothing mounted;
* values.schema.json holds the settings' bounds, and the chart refuses the combinations the
  services would refuse (or that could not work);
* overlays/agent-certificates: the same mount and settings through kustomize.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from approver.agent_certs.ca_files import load_agent_ca
from approver.agent_certs.settings import AgentCertificateSettings
from certs_tooling.cli import main as certs_main
from tests.manifests import chart
from tests.manifests.conftest import TRUSTED, Case
from tests.manifests.test_config import _load
from webhook.config import AgentProxy

APPROVER = "agent-bootstrap-approver"
WEBHOOK = "agent-bootstrap-webhook"
AGENT_CA_DIR = "/etc/agent-bootstrap/agent-ca"
AGENT_CA_VOLUME = "agent-ca"
#: The keys of certs-tooling's agent CA Secret, and the settings that read each.
AGENT_CA_FILES = {
    "caCertFile": "ca.crt",
    "caKeyFile": "ca.key",
    "trustBundleFile": "ca-bundle.crt",
}
OVERLAY = chart.KUSTOMIZE_DIR / "overlays" / "agent-certificates"
needs_kubectl = pytest.mark.skipif(
    chart.kubectl() is None, reason="kubectl is not installed: cannot run kubectl kustomize"
)

CERTS: dict[str, Any] = {"agentCertificates": {"enabled": True}}
PROXY: dict[str, Any] = chart.merge(
    CERTS, {"agents": {"autoApprove": {"namespaces": [TRUSTED]}, "agentProxy": {"enabled": True}}}
)


def _case(values: dict[str, Any], defaults: dict[str, Any], **render: Any) -> Case:
    return Case(
        name="agent-certificates",
        values=values,
        effective=chart.merge(defaults, values),
        objects=chart.render(values, **render),
    )


def _approver_url(objects: list[dict[str, Any]], namespace: str = chart.NAMESPACE) -> str:
    """https://<Service>.<namespace>.svc:<its https port>, read from the rendered Service."""
    service = chart.named(objects, "Service", APPROVER)
    (port,) = [p["port"] for p in service["spec"]["ports"] if p["name"] == "https"]
    return f"https://{APPROVER}.{namespace}.svc:{port}"


def _webhook_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec = dict(chart.pod_specs(objects))[WEBHOOK]
    container: dict[str, Any] = spec["containers"][0]
    return container


# --- agentCertificates --------------------------------------------------------------------------


class TestAgentCertificates:
    def test_enabled_mounts_the_secret_and_the_approver_loads_it(
        self, chart_defaults: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Each CA file is the key of the same name of the agent CA Secret, mounted read-only
        as a directory (no subPath: a rotation reaches the pod) with mode 0440 and the pod's
        fsGroup; the approver's loader accepts the config, over TLS, with the defaults."""
        case = _case(CERTS, chart_defaults)
        settings, raw, files = _load(case, "approver", tmp_path, monkeypatch)
        certs = settings.agent_certificates
        assert certs.enabled is True
        assert settings.tls_enabled
        for field, key in AGENT_CA_FILES.items():
            assert raw["agentCertificates"][field] == f"{AGENT_CA_DIR}/{key}", field
            volume, name = files.volume_for(raw["agentCertificates"][field])
            assert (volume["name"], name) == (AGENT_CA_VOLUME, key), field
        assert files.volumes[AGENT_CA_VOLUME] == {
            "name": AGENT_CA_VOLUME,
            "secret": {
                "secretName": "agent-bootstrap-agent-ca",
                "defaultMode": 0o440,
                "items": [{"key": k, "path": k} for k in AGENT_CA_FILES.values()],
            },
        }
        assert files.mounts[AGENT_CA_DIR] == {
            "name": AGENT_CA_VOLUME,
            "mountPath": AGENT_CA_DIR,
            "readOnly": True,
        }
        spec = dict(chart.pod_specs(case.objects))[APPROVER]
        assert spec["securityContext"]["fsGroup"] == 65532
        assert certs.ca_cert_file is not None
        assert certs.ca_key_file is not None
        assert certs.trust_bundle is not None
        assert (certs.ca_cert_file.name, certs.ca_key_file.name, certs.trust_bundle.name) == (
            "ca.crt",
            "ca.key",
            "ca-bundle.crt",
        )
        defaults = AgentCertificateSettings()
        assert certs.lifetime_seconds == defaults.lifetime_seconds == 86400
        assert certs.max_live_per_agent == defaults.max_live_per_agent == 2
        assert certs.require_at_gate is False
        assert certs.crl_validity_seconds == defaults.crl_validity_seconds == 600
        assert certs.cluster == chart_defaults["clusterName"]

    def test_cert_manager_secret_keys(
        self, chart_defaults: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A cert-manager CA Certificate's Secret (tls.crt, tls.key, ca.crt): secretKeys maps
        its keys onto the files the approver reads, whose names do not change."""
        values = chart.merge(
            CERTS,
            {
                "agentCertificates": {
                    "secretName": "agent-ca-cm",
                    "secretKeys": {"cert": "tls.crt", "key": "tls.key", "bundle": "ca.crt"},
                }
            },
        )
        case = _case(values, chart_defaults)
        settings, raw, files = _load(case, "approver", tmp_path, monkeypatch)
        assert settings.agent_certificates.enabled
        assert files.volumes[AGENT_CA_VOLUME]["secret"]["secretName"] == "agent-ca-cm"
        assert files.volumes[AGENT_CA_VOLUME]["secret"]["items"] == [
            {"key": "tls.crt", "path": "ca.crt"},
            {"key": "tls.key", "path": "ca.key"},
            {"key": "ca.crt", "path": "ca-bundle.crt"},
        ]
        assert raw["agentCertificates"]["caCertFile"] == f"{AGENT_CA_DIR}/ca.crt"

    def test_values_reach_the_settings(
        self, chart_defaults: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every value of agentCertificates is the setting the approver reads."""
        values = {
            "agentCertificates": {
                "enabled": True,
                "secretName": "agent-ca-prod",
                "lifetimeSeconds": 3600,
                "maxLivePerAgent": 5,
                "requireAtGate": True,
                "cluster": "prod-eu-1.example",
                "crlValiditySeconds": 120,
                "minReissueSeconds": 0,
            }
        }
        case = _case(values, chart_defaults)
        settings, _, files = _load(case, "approver", tmp_path, monkeypatch)
        certs = settings.agent_certificates
        assert files.volumes[AGENT_CA_VOLUME]["secret"]["secretName"] == "agent-ca-prod"
        assert (
            certs.lifetime_seconds,
            certs.max_live_per_agent,
            certs.require_at_gate,
            certs.cluster,
            certs.crl_validity_seconds,
            certs.min_reissue_seconds,
        ) == (3600, 5, True, "prod-eu-1.example", 120, 0)

    def test_cluster_defaults_to_cluster_name(
        self, chart_defaults: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An empty agentCertificates.cluster is the chart's clusterName (the tokens' cluster)."""
        values = chart.merge(CERTS, {"clusterName": "prod-us-2"})
        settings, _, _ = _load(_case(values, chart_defaults), "approver", tmp_path, monkeypatch)
        assert settings.agent_certificates.cluster == "prod-us-2"

    def test_certs_tooling_secret_fills_the_mount(
        self,
        chart_defaults: dict[str, Any],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The Secret `certs-tooling k8s-manifests` prints after `agent-ca init`, laid out as the
        chart's volume lays it out, is what the approver reads: its CA loader accepts the pair
        (a CA that may sign, key matching) and the trust bundle is a PEM bundle OpenSSL loads."""
        pki = tmp_path / "pki"
        assert certs_main(["init", "--out", str(pki), "--namespace", chart.NAMESPACE]) == 0
        assert certs_main(["agent-ca", "init", "--out", str(pki)]) == 0
        capsys.readouterr()
        assert certs_main(["k8s-manifests", "--out", str(pki), "--namespace", chart.NAMESPACE]) == 0
        printed = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]

        case = _case(CERTS, chart_defaults)
        secret_name = case.effective["agentCertificates"]["secretName"]
        secret = chart.named(printed, "Secret", secret_name)
        assert secret["metadata"]["namespace"] == chart.NAMESPACE
        settings, _, files = _load(case, "approver", tmp_path, monkeypatch)
        volume = files.volumes[AGENT_CA_VOLUME]["secret"]
        assert volume["secretName"] == secret_name
        local_dir = tmp_path / "pod" / AGENT_CA_DIR.lstrip("/")
        for item in volume["items"]:  # what the kubelet writes into the directory
            (local_dir / item["path"]).write_bytes(base64.b64decode(secret["data"][item["key"]]))
        certs = settings.agent_certificates
        assert certs.ca_cert_file is not None
        assert certs.ca_key_file is not None
        assert certs.trust_bundle is not None
        ca = load_agent_ca(certs.ca_cert_file, certs.ca_key_file)
        assert ca.certificate.subject.rfc4514_string() == "CN=agent-bootstrap-agent-ca"
        ssl.create_default_context().load_verify_locations(cafile=str(certs.trust_bundle))

    def test_every_value_set_mounts_exactly_when_enabled(
        self, case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """In every value set the section and the volume are there exactly when enabled, and
        the loaded settings say what the values say."""
        values = case.effective["agentCertificates"]
        settings, raw, files = _load(case, "approver", tmp_path, monkeypatch)
        certs = settings.agent_certificates
        assert certs.enabled is values["enabled"]
        assert ("agentCertificates" in raw) is values["enabled"]
        assert (AGENT_CA_VOLUME in files.volumes) is values["enabled"]
        assert (AGENT_CA_DIR in files.mounts) is values["enabled"]
        if not values["enabled"]:
            assert certs == AgentCertificateSettings()
            return
        assert files.volumes[AGENT_CA_VOLUME]["secret"]["secretName"] == values["secretName"]
        assert certs.lifetime_seconds == values["lifetimeSeconds"]
        assert certs.max_live_per_agent == values["maxLivePerAgent"]
        assert certs.require_at_gate is values["requireAtGate"]
        assert certs.cluster == (values["cluster"] or case.effective["clusterName"])
        assert certs.crl_validity_seconds == values["crlValiditySeconds"]


# --- agents.agentProxy --------------------------------------------------------------------------


class TestAgentProxy:
    def test_defaults_are_the_charts_image_and_approver(
        self, chart_defaults: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The webhook's loader accepts agentProxy; the image is the one the services run (with
        its pull policy) and upstreamUrl this release's approver Service on its port, the DNS
        name its serving certificate carries."""
        case = _case(PROXY, chart_defaults)
        settings, raw, _ = _load(case, "webhook", tmp_path, monkeypatch)
        proxy = settings.agent_proxy
        container = _webhook_container(case.objects)
        assert proxy.enabled is True
        assert proxy.image == container["image"] == "agent-bootstrap:0.1.0"
        assert proxy.image_pull_policy == container["imagePullPolicy"]
        assert proxy.upstream_url == _approver_url(case.objects)
        assert proxy.upstream_url == "https://agent-bootstrap-approver.agent-bootstrap.svc:8444"
        values = case.effective["agents"]["agentProxy"]
        assert list(proxy.containers) == values["containers"] == ["k8s-agent"]
        assert proxy.url_variable == values["urlVariable"] == "CONTROL_PLANE_URL"
        assert proxy.ca_config_map == values["caConfigMap"] == "agent-bootstrap-ca"
        assert proxy.ca_key == values["caKey"] == "ca.crt"
        assert proxy.port == values["port"] == 8480
        assert raw["agentProxy"]["enabled"] is True

    def test_upstream_follows_namespace_port_and_image_digest(
        self, chart_defaults: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The defaults follow the release namespace, approver.port and image.digest."""
        values = chart.merge(
            PROXY,
            {
                "approver": {"port": 9444},
                "image": {
                    "repository": "registry.example/agent-bootstrap",
                    "digest": "sha256:" + "b" * 64,
                    "pullPolicy": "Always",
                },
            },
        )
        case = _case(values, chart_defaults, namespace="platform")
        settings, _, _ = _load(case, "webhook", tmp_path, monkeypatch)
        proxy = settings.agent_proxy
        assert proxy.upstream_url == _approver_url(case.objects, "platform")
        assert proxy.upstream_url == "https://agent-bootstrap-approver.platform.svc:9444"
        assert proxy.image == _webhook_container(case.objects)["image"]
        assert proxy.image == "registry.example/agent-bootstrap@sha256:" + "b" * 64
        assert proxy.image_pull_policy == "Always"

    def test_explicit_values_win(
        self, chart_defaults: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Set values are taken as they are. An upstream of another approver needs neither this
        approver's TLS nor its certificates."""
        given = {
            "image": "registry.example/proxy:1.2",
            "upstreamUrl": "https://approver.example.com:443",
            "containers": ["agent", "helper"],
            "urlVariable": "API_URL",
            "caConfigMap": "approver-ca",
            "caKey": "bundle.pem",
            "port": 9480,
        }
        values = {
            "agents": {
                "autoApprove": {"namespaces": [TRUSTED]},
                "agentProxy": {"enabled": True, **given},
            },
            "approver": {"tls": {"enabled": False}},
        }
        settings, _, _ = _load(_case(values, chart_defaults), "webhook", tmp_path, monkeypatch)
        proxy = settings.agent_proxy
        assert proxy.model_dump(by_alias=True, mode="json") == {
            **given,
            "enabled": True,
            "imagePullPolicy": "IfNotPresent",
        }

    def test_every_value_set_renders_it_exactly_when_enabled(
        self, case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """In every value set agentProxy is in the webhook's config exactly when enabled, with
        the chart's image and approver by default; off, the webhook's default."""
        values = case.effective["agents"]["agentProxy"]
        settings, raw, _ = _load(case, "webhook", tmp_path, monkeypatch)
        assert ("agentProxy" in raw) is values["enabled"]
        if not values["enabled"]:
            assert settings.agent_proxy == AgentProxy()
            return
        assert settings.agent_proxy.image == (
            values["image"] or _webhook_container(case.objects)["image"]
        )
        assert settings.agent_proxy.upstream_url == (
            values["upstreamUrl"] or _approver_url(case.objects)
        )

    def test_injected_sidecar_is_a_valid_pod(
        self,
        chart_defaults: dict[str, Any],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """What the webhook makes of the rendered settings, applied to StreamSpace's real agent
        pod that opts in: the sidecar runs the chart's image against the approver Service, the
        agent dials it on the loopback, and the pod is valid for every supported Kubernetes."""
        import jsonpatch

        from tests.manifests.test_chart_knobs import _validate
        from webhook.inject import set_envs
        from webhook.server import _proxy_injection
        from webhook.sidecar import OPT_IN_ANNOTATION, SIDECAR_NAME, inject_proxy, url_entry

        case = _case(PROXY, chart_defaults)
        settings, _, _ = _load(case, "webhook", tmp_path, monkeypatch)
        injection = _proxy_injection(settings)
        assert injection is not None
        deployment = yaml.safe_load(chart.STREAMSPACE_AGENT.read_text())
        template = copy.deepcopy(deployment["spec"]["template"])
        template["metadata"].setdefault("annotations", {})[OPT_IN_ANNOTATION] = "true"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**template["metadata"], "name": "k8s-agent-0", "namespace": TRUSTED},
            "spec": template["spec"],
        }
        # As webhook.stamp.decide orders them: the env changes, then the sidecar.
        sidecar_ops = inject_proxy(pod, injection)
        assert sidecar_ops
        patch = set_envs(pod, [(injection.containers, url_entry(injection))]) + sidecar_ops
        patched: dict[str, Any] = jsonpatch.apply_patch(pod, patch)
        sidecar = patched["spec"]["initContainers"][0]
        assert sidecar["name"] == SIDECAR_NAME
        assert sidecar["image"] == _webhook_container(case.objects)["image"]
        env = {e["name"]: e.get("value") for e in sidecar["env"]}
        assert env["AGENT_BOOTSTRAP_PROXY_UPSTREAM_URL"] == _approver_url(case.objects)
        agent = next(c for c in patched["spec"]["containers"] if c["name"] == "k8s-agent")
        agent_env = {e["name"]: e.get("value") for e in agent["env"]}
        assert agent_env["CONTROL_PLANE_URL"] == "ws://127.0.0.1:8480"
        _validate([patched])

    def test_agents_network_policy_admits_the_proxy_upstream(
        self, chart_defaults: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With controlPlane streamspace, StreamSpace's agent pods may only reach the approver
        (restrictAgents). The proxy runs in those pods: the port of its default upstream (the
        Service port) leads to the approver's container port, which that egress rule admits.
        The approver's ingress already admits the agents' namespace. Nothing new is needed."""
        from tests.manifests.conftest import STREAMSPACE_CONTROL_PLANE

        values = chart.merge(PROXY, {"controlPlane": STREAMSPACE_CONTROL_PLANE})
        case = _case(values, chart_defaults)
        settings, _, _ = _load(case, "webhook", tmp_path, monkeypatch)
        assert settings.agent_proxy.upstream_url is not None
        upstream_port = int(settings.agent_proxy.upstream_url.rsplit(":", 1)[1])
        service = chart.named(case.objects, "Service", APPROVER)
        (target,) = [
            p["targetPort"] for p in service["spec"]["ports"] if p["port"] == upstream_port
        ]
        approver = dict(chart.pod_specs(case.objects))[APPROVER]["containers"][0]
        (container_port,) = [p["containerPort"] for p in approver["ports"] if p["name"] == target]
        agents = chart.named(case.objects, "NetworkPolicy", "agent-bootstrap-streamspace-agents")
        to_approver = [
            rule
            for rule in agents["spec"]["egress"]
            if any("podSelector" in peer and "namespaceSelector" in peer for peer in rule["to"])
        ]
        assert {"port": container_port, "protocol": "TCP"} in to_approver[0]["ports"]
        ingress = chart.named(case.objects, "NetworkPolicy", APPROVER)["spec"]["ingress"]
        admitted = [r for r in ingress if {"port": container_port, "protocol": "TCP"} in r["ports"]]
        assert any(
            chart.matches(peer.get("namespaceSelector"), chart.namespace_labels(TRUSTED))
            for rule in admitted
            for peer in rule["from"]
        )


# --- off by default -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["defaults", "kustomize-base"])
def test_off_by_default(
    name: str, cases: dict[str, Case], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the defaults (and the kustomize base) neither section is rendered and the approver
    mounts no agent CA: the services' defaults, as before the values existed."""
    case = cases[name]
    assert case.effective["agentCertificates"]["enabled"] is False
    assert case.effective["agents"]["agentProxy"]["enabled"] is False
    approver, approver_raw, files = _load(case, "approver", tmp_path, monkeypatch)
    assert "agentCertificates" not in approver_raw
    assert approver.agent_certificates.enabled is False
    assert AGENT_CA_VOLUME not in files.volumes
    assert not [m for m in files.mounts if m.startswith(AGENT_CA_DIR)]
    webhook, webhook_raw, _ = _load(case, "webhook", tmp_path, monkeypatch)
    assert "agentProxy" not in webhook_raw
    assert webhook.agent_proxy.enabled is False


def test_disabled_values_change_nothing() -> None:
    """Every other value of the two sections is ignored while they are off: the render is the
    default one, object for object."""
    values = {
        "agentCertificates": {
            "enabled": False,
            "secretName": "elsewhere",
            "lifetimeSeconds": 300,
            "maxLivePerAgent": 16,
            "cluster": "other",
            "crlValiditySeconds": 60,
        },
        "agents": {
            "agentProxy": {
                "enabled": False,
                "image": "registry.example/proxy:1",
                "upstreamUrl": "https://approver.example.com",
                "containers": ["agent"],
                "port": 1,
            }
        },
    }
    canonical = [json.dumps(o, sort_keys=True) for o in chart.render()]
    assert [json.dumps(o, sort_keys=True) for o in chart.render(values)] == canonical


# --- schema and chart checks --------------------------------------------------------------------


#: (values path, one value under the setting's lowest, its lowest, its highest, one above).
BOUNDS = [
    (("agentCertificates", "lifetimeSeconds"), 299, 300, 2592000, 2592001),
    (("agentCertificates", "maxLivePerAgent"), 0, 1, 16, 17),
    (("agentCertificates", "crlValiditySeconds"), 59, 60, 604800, 604801),
    (("agentCertificates", "minReissueSeconds"), -1, 0, 86400, 86401),
    (("agents", "agentProxy", "port"), 0, 1, 65535, 65536),
]


def _at(path: tuple[str, ...], value: Any, base: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = value
    for key in reversed(path):
        tree = {key: tree}
    return chart.merge(base, tree)


@pytest.mark.parametrize(("path", "below", "low", "high", "above"), BOUNDS)
def test_schema_bounds_are_the_settings_bounds(
    path: tuple[str, ...],
    below: int,
    low: int,
    high: int,
    above: int,
    chart_defaults: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """values.schema.json refuses one past either bound, and the service's loader accepts the
    bounds themselves: the schema is neither looser nor tighter than the settings."""
    import helm_python as helm

    component = "webhook" if path[0] == "agents" else "approver"
    for value in (below, above):
        with pytest.raises(helm.HelmValuesError):
            chart.render(_at(path, value, PROXY))
    for value in (low, high):
        values = _at(path, value, PROXY)
        settings, _, _ = _load(_case(values, chart_defaults), component, tmp_path, monkeypatch)
        section = settings.agent_proxy if component == "webhook" else settings.agent_certificates
        assert section.model_dump(by_alias=True)[path[-1]] == value
        raw = section.model_dump(by_alias=True)
        raw[path[-1]] = below if value == low else above
        with pytest.raises(ValueError, match=path[-1]):
            type(section).model_validate(raw)


@pytest.mark.parametrize(
    "values",
    [
        {"agentCertificates": {"enabled": "yes"}},
        {"agentCertificates": {"lifetimeSeconds": "86400"}},
        {"agentCertificates": {"lifetimeSeconds": 3600.5}},
        {"agentCertificates": {"requireAtGate": "true"}},
        {"agentCertificates": {"secretName": ""}},
        {"agentCertificates": {"secretName": "Agent_CA"}},
        {"agentCertificates": {"cluster": "-prod"}},
        {"agentCertificates": {"cluster": "prod eu"}},
        {"agentCertificates": {"caCertFile": "/etc/ca.crt"}},  # the chart sets the paths
        {"agentCertificates": None},
        {"agents": {"agentProxy": {"enabled": 1}}},
        {"agents": {"agentProxy": {"upstreamUrl": "http://approver:8444"}}},
        {"agents": {"agentProxy": {"upstreamUrl": "approver:8444"}}},
        {"agents": {"agentProxy": {"containers": []}}},
        {"agents": {"agentProxy": {"containers": ["K8s_Agent"]}}},
        {"agents": {"agentProxy": {"urlVariable": "1URL"}}},
        {"agents": {"agentProxy": {"caConfigMap": ""}}},
        {"agents": {"agentProxy": {"caKey": "ca/crt"}}},
        {"agents": {"agentProxy": {"port": "8480"}}},
        {"agents": {"agentProxy": {"image": "agent bootstrap"}}},
        {"agents": {"agentProxy": {"upstream": "https://approver"}}},  # misspelt key
    ],
)
def test_schema_refuses(values: dict[str, Any]) -> None:
    """Wrong types, bad names and unknown keys are refused before any template runs."""
    import helm_python as helm

    with pytest.raises(helm.HelmValuesError):
        chart.render(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"agentCertificates": {"requireAtGate": True}},
            "agentCertificates.requireAtGate needs agentCertificates.enabled",
        ),
        (
            {"agentCertificates": {"enabled": True}, "approver": {"tls": {"enabled": False}}},
            "agentCertificates.enabled needs approver.tls.enabled",
        ),
        (
            {"agentCertificates": {"enabled": True}, "clusterName": "prod_eu"},
            "set agentCertificates.cluster",
        ),
        (
            {"agents": {"agentProxy": {"enabled": True}}, "agentCertificates": {"enabled": True}},
            "agents.agentProxy.enabled needs at least one namespace",
        ),
        (
            {"agents": {"autoApprove": {"namespaces": [TRUSTED]}, "agentProxy": {"enabled": True}}},
            "needs agentCertificates.enabled",
        ),
        (
            {
                "agents": {
                    "autoApprove": {"namespaces": [TRUSTED]},
                    "agentProxy": {"enabled": True},
                },
                "approver": {"tls": {"enabled": False}},
            },
            "upstreamUrl \\(this release's approver\\) needs approver.tls.enabled",
        ),
    ],
)
def test_chart_refuses_combinations(values: dict[str, Any], message: str) -> None:
    """Combinations the services would refuse at start, or that could not work, fail the
    render with a message naming the values."""
    import helm_python as helm

    with pytest.raises(helm.HelmRenderError, match=message):
        chart.render(values)


def test_chart_accepts_what_the_checks_do_not_cover(chart_defaults: dict[str, Any]) -> None:
    """The checks bite only where they should: an invalid clusterName is fine with an explicit
    agentCertificates.cluster, and requireAtGate with enabled renders."""
    values = {
        "clusterName": "prod_eu",
        "agentCertificates": {"enabled": True, "cluster": "prod-eu", "requireAtGate": True},
    }
    case = _case(values, chart_defaults)
    assert AGENT_CA_VOLUME in {
        v["name"] for v in dict(chart.pod_specs(case.objects))[APPROVER]["volumes"]
    }


# --- kustomize ----------------------------------------------------------------------------------


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    exe = chart.kubectl()
    assert exe is not None
    out = subprocess.run(
        [exe, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(directory)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _kustomize_case(objects: list[dict[str, Any]]) -> Case:
    return Case(name="overlay", values={}, effective={}, objects=objects)


@needs_kubectl
def test_overlay_matches_the_chart(
    cases: dict[str, Case], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """overlays/agent-certificates gives the approver the chart's agent CA volume and mount,
    and settings equal to the chart's with agentCertificates.enabled; everything else is the
    base. Its objects are valid for every supported Kubernetes."""
    from tests.manifests.test_chart_knobs import _validate

    overlay = chart.kustomize_build(OVERLAY)
    helm_values = chart.merge(cases["kustomize-base"].values, CERTS)
    helm_case = Case("helm", helm_values, {}, chart.render(helm_values))
    from_helm, _, helm_files = _load(helm_case, "approver", tmp_path, monkeypatch)
    from_overlay, _, files = _load(_kustomize_case(overlay), "approver", tmp_path, monkeypatch)
    assert from_overlay.agent_certificates.enabled is True
    assert from_overlay.agent_certificates == from_helm.agent_certificates
    assert files.volumes[AGENT_CA_VOLUME] == helm_files.volumes[AGENT_CA_VOLUME]
    assert files.mounts[AGENT_CA_DIR] == helm_files.mounts[AGENT_CA_DIR]
    base = {_key(o): o for o in chart.kustomize_build()}
    changed = [k for k, o in ((_key(o), o) for o in overlay) if base.get(k) != o]
    assert changed == [("Deployment", APPROVER)]
    _validate(overlay)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


@needs_kubectl
def test_overlay_optional_agent_proxy_matches_the_chart(
    cases: dict[str, Case], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The overlay's optional webhook patch (commented out in its kustomization) gives the
    webhook the agentProxy the chart renders with agents.agentProxy.enabled: the base's image
    and the approver Service."""
    kustomization = (OVERLAY / "kustomization.yaml").read_text()
    assert "# - path: webhook-agent-proxy.yaml" in kustomization
    work = tmp_path / "with-proxy"
    work.mkdir()
    (work / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(OVERLAY, work)],
                "patches": [{"path": os.path.relpath(OVERLAY / "webhook-agent-proxy.yaml", work)}],
            }
        )
    )
    objects = _kustomize(work)
    helm_values = chart.merge(
        cases["kustomize-base"].values,
        chart.merge(CERTS, {"agents": {"agentProxy": {"enabled": True}}}),
    )
    helm_case = Case("helm", helm_values, {}, chart.render(helm_values))
    from_helm, _, _ = _load(helm_case, "webhook", tmp_path, monkeypatch)
    from_overlay, _, _ = _load(_kustomize_case(objects), "webhook", tmp_path, monkeypatch)
    assert from_overlay.agent_proxy.enabled is True
    assert from_overlay.agent_proxy == from_helm.agent_proxy
    assert from_overlay.agent_proxy.image == _webhook_container(objects)["image"]
    assert from_overlay.agent_proxy.upstream_url == _approver_url(objects)
