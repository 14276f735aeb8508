"""The cluster-bootstrap hooks (templates/clusterbootstrap.yaml): Jobs running
``certs-tooling cluster-bootstrap`` and their ServiceAccount and RBAC, on every value set.

Rendered when ``clusterBootstrap.enabled`` and not ``keys.create``. The create Job is a
pre-install/pre-upgrade hook; the patch Job (post-install/post-upgrade) and the ClusterRole exist
only when the MutatingWebhookConfiguration is rendered without a caBundle from values and without
cert-manager. Strict schema validation of these objects is in test_validate.py (all objects of
every value set).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.manifests import chart
from tests.manifests.conftest import TRUSTED, Case

NAME = "agent-bootstrap-cluster-bootstrap"
PATCH = f"{NAME}-patch"
CREATE_HOOKS = "pre-install,pre-upgrade"
ALL_HOOKS = "pre-install,pre-upgrade,post-install,post-upgrade"
POST_HOOKS = "post-install,post-upgrade"
DELETE_POLICY = "before-hook-creation,hook-succeeded"


def _rendered(effective: dict[str, Any]) -> bool:
    return bool(effective["clusterBootstrap"]["enabled"]) and not effective["keys"]["create"]


def _patches(effective: dict[str, Any]) -> bool:
    tls = effective["tls"]
    return (
        _rendered(effective)
        and not effective["certManager"]["enabled"]
        and bool(effective["agents"]["autoApprove"]["namespaces"])
        and not tls["caBundle"]
        and not tls["caBundlePem"]
    )


def _bootstrap(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects if chart.is_bootstrap(o)}


def _job_args(objects: list[dict[str, Any]], name: str) -> list[str]:
    job = _bootstrap(objects)[("Job", name)]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args: list[str] = container["args"]
    return args


def test_objects_and_hooks(case: Case) -> None:
    """Which objects, with which hook events, weights (RBAC before the Jobs) and delete policy."""
    found = _bootstrap(case.objects)
    if not _rendered(case.effective):
        assert found == {}
        return
    patch = _patches(case.effective)
    events = ALL_HOOKS if patch else CREATE_HOOKS
    expected = {
        ("ServiceAccount", NAME): (events, "-10"),
        ("Role", NAME): (events, "-10"),
        ("RoleBinding", NAME): (events, "-10"),
        ("Job", NAME): (CREATE_HOOKS, "0"),
    }
    if patch:
        expected |= {
            ("ClusterRole", f"{chart.RELEASE}-cluster-bootstrap"): (POST_HOOKS, "-10"),
            ("ClusterRoleBinding", f"{chart.RELEASE}-cluster-bootstrap"): (POST_HOOKS, "-10"),
            ("Job", PATCH): (POST_HOOKS, "0"),
        }
    assert {
        key: (
            o["metadata"]["annotations"]["helm.sh/hook"],
            o["metadata"]["annotations"]["helm.sh/hook-weight"],
        )
        for key, o in found.items()
    } == expected
    for o in found.values():
        assert o["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == DELETE_POLICY


def test_exact_rbac(case: Case) -> None:
    """get on the named Secrets and the JWKS ConfigMap only, create (not restrictable by name),
    get/patch on this release's MutatingWebhookConfiguration only; bound to the Job's account."""
    if not _rendered(case.effective):
        return
    found = _bootstrap(case.objects)
    eff = case.effective
    signing = eff["keys"]["signingKeySecretName"] or (
        "agent-bootstrap-signing-key"
        if eff["certManager"]["enabled"]
        else eff["tls"]["webhookSecretName"]
    )
    if eff["certManager"]["enabled"]:
        secrets = [signing]
    else:
        secrets = [eff["clusterBootstrap"]["caSecretName"], eff["tls"]["webhookSecretName"]]
        if eff["approver"]["tls"]["enabled"]:
            secrets.append(eff["tls"]["approverSecretName"])
        if signing not in secrets:
            secrets.append(signing)
    assert found[("Role", NAME)]["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": secrets, "verbs": ["get"]},
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [eff["keys"]["jwksConfigMapName"]],
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["create"]},
    ]
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": chart.NAMESPACE}]
    assert found[("RoleBinding", NAME)]["subjects"] == subject
    assert found[("RoleBinding", NAME)]["roleRef"]["name"] == NAME
    assert found[("ServiceAccount", NAME)]["automountServiceAccountToken"] is False
    if _patches(eff):
        cluster = f"{chart.RELEASE}-cluster-bootstrap"
        (mwc,) = chart.of_kind(case.objects, "MutatingWebhookConfiguration")
        assert found[("ClusterRole", cluster)]["rules"] == [
            {
                "apiGroups": ["admissionregistration.k8s.io"],
                "resources": ["mutatingwebhookconfigurations"],
                "resourceNames": [mwc["metadata"]["name"]],
                "verbs": ["get", "patch"],
            }
        ]
        assert found[("ClusterRoleBinding", cluster)]["subjects"] == subject
        assert found[("ClusterRoleBinding", cluster)]["roleRef"]["name"] == cluster


def test_job_pods(case: Case) -> None:
    """The chart's image and certs-tooling, the webhook's security contexts, a token (the only
    account that needs one here), no service links, never restarted in place."""
    if not _rendered(case.effective):
        return
    webhook = dict(chart.pod_specs(case.objects))["agent-bootstrap-webhook"]
    for key, job in _bootstrap(case.objects).items():
        if key[0] != "Job":
            continue
        spec = job["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == NAME
        assert spec["automountServiceAccountToken"] is True
        assert spec["enableServiceLinks"] is False
        assert spec["restartPolicy"] == "Never"
        assert spec["securityContext"] == webhook["securityContext"]
        (container,) = spec["containers"]
        assert container["image"] == webhook["containers"][0]["image"]
        assert container["command"] == ["/opt/venv/bin/certs-tooling"]
        assert container["args"][0] == "cluster-bootstrap"
        assert container["securityContext"] == webhook["containers"][0]["securityContext"]
        assert container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
        assert "volumeMounts" not in container


def test_defaults_render_the_create_job() -> None:
    """Default values: the create Job (no configuration to patch: none is rendered)."""
    args = _job_args(chart.render(), NAME)
    assert args == [
        "cluster-bootstrap",
        "--webhook-service=agent-bootstrap-webhook",
        "--approver-service=agent-bootstrap-approver",
        "--jwks-configmap=agent-bootstrap-jwks",
        "--ca-secret=agent-bootstrap-serving-ca",
        "--webhook-secret=agent-bootstrap-webhook-tls",
        "--ca-days=1825",
        "--leaf-days=365",
        "--approver-secret=agent-bootstrap-approver-tls",
    ]


def test_trusted_namespace_adds_the_patch_job() -> None:
    objects = chart.render({"agents": {"autoApprove": {"namespaces": [TRUSTED]}}})
    assert _job_args(objects, PATCH) == [
        *_job_args(objects, NAME),
        "--webhook-configuration=agent-bootstrap",
    ]


def test_ca_bundle_from_values_means_no_patch() -> None:
    """tls.caBundle given: the values own the caBundle; the Job only creates what is absent."""
    objects = chart.render(
        {"agents": {"autoApprove": {"namespaces": [TRUSTED]}}, "tls": {"caBundle": "Zm9v"}}
    )
    assert set(_bootstrap(objects)) == {
        ("ServiceAccount", NAME),
        ("Role", NAME),
        ("RoleBinding", NAME),
        ("Job", NAME),
    }


def test_cert_manager_mode_makes_only_the_signing_key_and_jwks() -> None:
    """certManager.enabled: cert-manager's Certificates and CA injector own the TLS Secrets and
    the caBundle (the configuration carries cert-manager.io/inject-ca-from); the Job makes the
    signing key Secret and the JWKS only, and gets no right on the configuration."""
    objects = chart.render(
        {"certManager": {"enabled": True}, "agents": {"autoApprove": {"namespaces": [TRUSTED]}}}
    )
    (mwc,) = chart.of_kind(objects, "MutatingWebhookConfiguration")
    assert mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{chart.NAMESPACE}/agent-bootstrap-webhook"
    )
    args = _job_args(objects, NAME)
    assert "--no-serving-certs" in args
    assert "--signing-secret=agent-bootstrap-signing-key" in args
    assert not [a for a in args if a.startswith(("--ca-secret", "--webhook-configuration"))]
    assert not chart.of_kind(_bootstrap(objects).values(), "ClusterRole")


@pytest.mark.parametrize(
    "values",
    [
        {"clusterBootstrap": {"enabled": False}},
        {
            "keys": {
                "create": True,
                "signingKey": "x",
                "jwks": "{}",
                "webhookTls": {"crt": "c", "key": "k"},
                "approverTls": {"crt": "c", "key": "k"},
            }
        },
    ],
)
def test_off_or_keys_from_values_render_nothing(values: dict[str, Any]) -> None:
    """clusterBootstrap.enabled false, or keys.create (Helm owns those Secrets: a Job creating
    them first would make Helm refuse its own objects)."""
    assert _bootstrap(chart.render(values)) == {}


def test_plain_http_approver_and_own_signing_secret() -> None:
    args = _job_args(
        chart.render(
            {"approver": {"tls": {"enabled": False}}, "keys": {"signingKeySecretName": "sk"}}
        ),
        NAME,
    )
    assert "--no-approver-tls" in args
    assert "--signing-secret=sk" in args
    assert not [a for a in args if a.startswith("--approver-secret")]


@pytest.mark.parametrize(
    "bad",
    [{"clusterBootstrap": {"enabled": True, "bogus": 1}}, {"clusterBootstrap": {"leafDays": 0}}],
)
def test_schema_is_strict(bad: dict[str, Any]) -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmValuesError):
        chart.render(bad)
