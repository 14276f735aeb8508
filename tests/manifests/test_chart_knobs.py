"""The knobs production charts have (issue 14, item 6), and what they leave alone when unset.

* per component (``webhook.*``, ``approver.*``): affinity, topologySpreadConstraints,
  nodeSelector, tolerations, priorityClassName, podLabels, podAnnotations, extraEnv,
  extraVolumes, extraVolumeMounts, resources;
* security contexts from values (``podSecurityContext``, ``securityContext``), kept inside the
  restricted Pod Security profile by the schema, and ``global.openshift`` (or a key set to null)
  leaving runAsUser/runAsGroup/fsGroup to OpenShift's SCC;
* cluster-scoped objects named after the release, so two releases never share one;
* Helm's ``global`` admitted by the schema (the chart can be a subchart), nothing else new;
* the ``helm test`` Pod: what it checks, with what privileges, and its script run for real
  against local TLS servers.

Every render here is also validated with kubernetes-validate (strict) for each supported
Kubernetes version.
"""

from __future__ import annotations

import http.server
import os
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Pki
from tests.manifests import chart
from tests.manifests.conftest import TRUSTED, Case

BOOTSTRAP_JOB = "agent-bootstrap-cluster-bootstrap"
WEBHOOK = "agent-bootstrap-webhook"
APPROVER = "agent-bootstrap-approver"
TEST_POD = "agent-bootstrap-test"
COMPONENTS = {"webhook": WEBHOOK, "approver": APPROVER}

#: Kinds without a namespace the chart may render. Namespace is named after the release
#: namespace; every other one after the release (agent-bootstrap.clusterName).
CLUSTER_KINDS = {
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "Namespace",
}

#: Values that render every cluster-scoped object.
ALL_CLUSTER_OBJECTS: dict[str, Any] = {
    "agents": {
        "autoApprove": {"namespaces": [TRUSTED]},
        "serviceAccountTokens": {"enabled": True, "mode": "tokenreview"},
    },
}

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

#: Every UID/GID key a security context may carry.
ID_KEYS = ("runAsUser", "runAsGroup", "fsGroup")


def _validate(objects: list[dict[str, Any]]) -> None:
    """kubernetes-validate --strict for every supported version (test_validate.py's helper)."""
    pytest.importorskip("kubernetes_validate")
    from tests.manifests.test_validate import K8S_VERSIONS, _validate_all

    for version in K8S_VERSIONS:
        errors = _validate_all(objects, version)
        assert not errors, f"{version}:\n" + "\n".join(errors)


def _pod_template(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    template: dict[str, Any] = chart.named(objects, "Deployment", name)["spec"]["template"]
    return template


def _container(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    container: dict[str, Any] = _pod_template(objects, name)["spec"]["containers"][0]
    return container


# --- per-component knobs ----------------------------------------------------------------------


def _knobs(component: str) -> dict[str, Any]:
    return {
        "podLabels": {"team": "platform", "example.com/cost-center": "42"},
        "podAnnotations": {"example.com/owner": "platform"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "node-role", "operator": "In", "values": ["infra"]}
                            ]
                        }
                    ]
                }
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
            },
            {
                "maxSkew": 2,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"team": "platform"}},
            },
        ],
        "extraEnv": [
            {"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"},
            {
                "name": f"AGENT_BOOTSTRAP_{component.upper()}_EXTRA",
                "valueFrom": {"secretKeyRef": {"name": "extra", "key": "value"}},
            },
        ],
        "extraVolumes": [
            {"name": "extra-ca", "configMap": {"name": "corp-ca"}},
            {"name": "scratch", "emptyDir": {"sizeLimit": "8Mi"}},
        ],
        "extraVolumeMounts": [
            {"name": "extra-ca", "mountPath": "/etc/corp-ca", "readOnly": True},
            {"name": "scratch", "mountPath": "/var/scratch"},
        ],
        "resources": {
            "requests": {"cpu": "20m", "memory": "48Mi"},
            "limits": {"cpu": "2", "memory": "1Gi"},
        },
    }


@pytest.mark.parametrize("component", ["webhook", "approver"])
def test_knobs_appear_where_they_should(component: str) -> None:
    """Set on one component, every knob lands in its pod template, the chart's own labels, env,
    volumes and mounts stay (the values come after them), the selector is unchanged, and the
    other component is rendered exactly as without them."""
    name = COMPONENTS[component]
    other = next(n for c, n in COMPONENTS.items() if c != component)
    knobs = _knobs(component)
    base = chart.render()
    objects = chart.render({component: knobs})
    _validate(objects)

    before, after = _pod_template(base, name), _pod_template(objects, name)
    spec = after["spec"]
    assert spec["affinity"] == knobs["affinity"]  # replaces the default
    assert spec["nodeSelector"] == knobs["nodeSelector"]
    assert spec["tolerations"] == knobs["tolerations"]
    assert spec["priorityClassName"] == knobs["priorityClassName"]
    own = chart.named(objects, "Deployment", name)["spec"]["selector"]
    zone, host = spec["topologySpreadConstraints"]
    assert zone["labelSelector"] == own  # filled in: this component's pods
    assert chart.matches(zone["labelSelector"], after["metadata"]["labels"])
    assert host == knobs["topologySpreadConstraints"][1]  # given: kept

    assert after["metadata"]["labels"] == {**before["metadata"]["labels"], **knobs["podLabels"]}
    assert chart.matches(own, after["metadata"]["labels"])
    assert after["metadata"]["annotations"] == {
        **before["metadata"]["annotations"],
        **knobs["podAnnotations"],
    }

    container, was = _container(objects, name), _container(base, name)
    assert container["env"] == was["env"] + knobs["extraEnv"]
    assert spec["volumes"] == before["spec"]["volumes"] + knobs["extraVolumes"]
    assert container["volumeMounts"] == was["volumeMounts"] + knobs["extraVolumeMounts"]
    assert container["resources"] == knobs["resources"]
    assert (
        chart.named(objects, "Deployment", name)["spec"]["selector"]
        == chart.named(base, "Deployment", name)["spec"]["selector"]
    )

    assert _pod_template(objects, other) == _pod_template(base, other)


def test_unset_knobs_change_nothing(chart_defaults: dict[str, Any]) -> None:
    """The knobs' defaults (empty) render exactly what no values render, and that is today's
    pod: the webhook's default anti-affinity, no spread constraints, no extra env or volumes,
    the security contexts as before."""
    empty = {
        "podLabels": {},
        "podAnnotations": {},
        "nodeSelector": {},
        "tolerations": [],
        "affinity": {},
        "topologySpreadConstraints": [],
        "priorityClassName": "",
        "extraEnv": [],
        "extraVolumes": [],
        "extraVolumeMounts": [],
    }
    for component in COMPONENTS:
        for key, value in empty.items():
            assert chart_defaults[component][key] == value, (component, key)
    base = chart.render()
    assert chart.render({"webhook": empty, "approver": empty}) == base

    webhook = _pod_template(base, WEBHOOK)["spec"]
    approver = _pod_template(base, APPROVER)["spec"]
    assert list(webhook["affinity"]) == ["podAntiAffinity"]
    assert "affinity" not in approver  # one replica: nothing to spread
    for spec in (webhook, approver):
        for key in (
            "topologySpreadConstraints",
            "nodeSelector",
            "tolerations",
            "priorityClassName",
        ):
            assert key not in spec
    assert {e["name"] for e in _container(base, WEBHOOK)["env"]} == {
        "AGENT_BOOTSTRAP_WEBHOOK_RELEASE_NAMESPACE"
    }
    assert {v["name"] for v in webhook["volumes"]} == {"config", "tls", "signing", "tmp"}
    assert webhook["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert _container(base, APPROVER)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_approver_replicas_keep_their_default_spread() -> None:
    """Several approvers still get the preferred anti-affinity unless affinity is set."""
    pg = {
        "replicas": 2,
        "database": {"type": "postgresql", "postgresql": {"existingSecret": "db"}},
    }
    spec = _pod_template(chart.render({"approver": pg}), APPROVER)["spec"]
    assert list(spec["affinity"]) == ["podAntiAffinity"]


@pytest.mark.parametrize("component", ["webhook", "approver"])
def test_pod_labels_may_not_override_the_charts(component: str) -> None:
    """A podLabels key the chart sets (the selector's among them) fails the render, naming it."""
    import helm_python as helm

    with pytest.raises(helm.HelmRenderError, match=f"{component}.podLabels must not set"):
        chart.render({component: {"podLabels": {"app.kubernetes.io/component": "x"}}})


@pytest.mark.parametrize(
    "values",
    [
        {"webhook": {"extraVolumes": [{"name": "host", "hostPath": {"path": "/"}}]}},
        {"approver": {"extraVolumes": [{"name": "two", "emptyDir": {}, "secret": {}}]}},
        {"approver": {"extraVolumes": [{"emptyDir": {}}]}},
        {"webhook": {"extraVolumeMounts": [{"name": "x", "mountPath": "relative"}]}},
        {"webhook": {"extraVolumeMounts": [{"name": "x", "mountPath": "/x", "bogus": 1}]}},
        {"webhook": {"extraEnv": [{"value": "no name"}]}},
        {"webhook": {"extraEnv": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {}}}]}},
        {"webhook": {"affinity": {"nodeAfinity": {}}}},
        {"webhook": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone"}]}},
        {"webhook": {"podLabels": {"team": "not a label value"}}},
        {"webhook": {"priorityClassName": "Not_A_Name"}},
        {"webhook": {"podSecurityContext": {"runAsNonRoot": False}}},
        {"webhook": {"podSecurityContext": {"runAsUser": 0}}},
        {"approver": {"podSecurityContext": {"seccompProfile": {"type": "Unconfined"}}}},
        {"approver": {"podSecurityContext": {"sysctls": []}}},
        {"webhook": {"securityContext": {"privileged": True}}},
        {"webhook": {"securityContext": {"allowPrivilegeEscalation": True}}},
        {"approver": {"securityContext": {"readOnlyRootFilesystem": False}}},
        {"approver": {"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}},
        {
            "approver": {
                "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}
            }
        },
        {"tests": {"enabled": "yes"}},
        {"tests": {"timeout": 5}},
        {"global": {"openshift": "yes"}},
    ],
)
def test_schema_refuses_bad_knobs(values: dict[str, Any]) -> None:
    """Wrong shapes, and anything that would leave the restricted Pod Security profile (host
    paths, root, privilege escalation, capabilities beyond NET_BIND_SERVICE, no seccomp) or make
    the root filesystem writable, are refused before any template runs."""
    import helm_python as helm

    with pytest.raises(helm.HelmValuesError):
        chart.render(values)


# --- security contexts, OpenShift -------------------------------------------------------------


def _all_pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    specs = dict(chart.pod_specs(objects))
    assert set(specs) == {WEBHOOK, APPROVER, TEST_POD, BOOTSTRAP_JOB}
    return specs


def _assert_hardened(name: str, spec: dict[str, Any]) -> None:
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True, name
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
    for c in spec["containers"]:
        ctx = c["securityContext"]
        assert ctx["runAsNonRoot"] is True, name
        assert ctx["allowPrivilegeEscalation"] is False, name
        assert ctx["readOnlyRootFilesystem"] is True, name
        assert ctx["privileged"] is False, name
        assert ctx["capabilities"] == {"drop": ["ALL"]}, name
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, name


def test_openshift_leaves_the_ids_to_the_scc() -> None:
    """global.openshift: no runAsUser, runAsGroup or fsGroup anywhere (webhook, approver, the
    helm test Pod, the cluster-bootstrap Job), even where values set them; every other part of
    the hardening stays."""
    objects = chart.render(
        {
            "global": {"openshift": True},
            "tls": {"caBundlePem": "-----BEGIN CERTIFICATE-----\n"},
            "approver": {"podSecurityContext": {"runAsUser": 1000}},
        }
    )
    _validate(objects)
    for name, spec in _all_pod_specs(objects).items():
        _assert_hardened(name, spec)
        contexts = [spec["securityContext"], *(c["securityContext"] for c in spec["containers"])]
        for ctx in contexts:
            assert not set(ID_KEYS) & set(ctx), (name, ctx)


def test_null_leaves_one_id_out() -> None:
    """A key set to null is left out (Helm drops it from the defaults), the others stay: the
    per-key alternative to global.openshift."""
    objects = chart.render(
        {
            "webhook": {
                "podSecurityContext": {"runAsUser": None, "fsGroup": None},
                "securityContext": {"runAsUser": None},
            },
            "approver": {"podSecurityContext": {"runAsUser": 1001, "runAsGroup": 1001}},
        }
    )
    _validate(objects)
    specs = _all_pod_specs(objects)
    for name, spec in specs.items():
        _assert_hardened(name, spec)
    # The test Pod and the cluster-bootstrap Job take the webhook's contexts.
    for name in (WEBHOOK, TEST_POD, BOOTSTRAP_JOB):
        assert "runAsUser" not in specs[name]["securityContext"]
        assert "fsGroup" not in specs[name]["securityContext"]
        assert specs[name]["securityContext"]["runAsGroup"] == 65532
        assert "runAsUser" not in specs[name]["containers"][0]["securityContext"]
    approver = specs[APPROVER]["securityContext"]
    assert (approver["runAsUser"], approver["runAsGroup"], approver["fsGroup"]) == (
        1001,
        1001,
        65532,
    )


# --- cluster-scoped names ---------------------------------------------------------------------


def _cluster_scoped(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    found = {
        (o["kind"], o["metadata"]["name"]): o for o in objects if "namespace" not in o["metadata"]
    }
    assert {kind for kind, _ in found} <= CLUSTER_KINDS, "a new cluster-scoped kind"
    return found


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("agent-bootstrap", "agent-bootstrap"),  # the documented release: today's names
        ("agent-bootstrap-staging", "agent-bootstrap-staging"),
        ("team-a", "team-a-agent-bootstrap"),
    ],
)
def test_cluster_scoped_names_follow_the_release(release: str, expected: str) -> None:
    """Every cluster-scoped object but the Namespace is named after the release; each reference
    between them (binding to role, policy binding to policy, webhook to its Service) agrees."""
    namespace = f"ns-{release}"
    values = chart.merge(ALL_CLUSTER_OBJECTS, {"createNamespace": True})
    objects = chart.render(values, release=release, namespace=namespace)
    _validate(objects)
    found = _cluster_scoped(objects)
    assert set(found) == {
        ("Namespace", namespace),
        ("MutatingWebhookConfiguration", expected),
        ("ValidatingAdmissionPolicy", f"{expected}-token-annotation"),
        ("ValidatingAdmissionPolicyBinding", f"{expected}-token-annotation"),
        ("ClusterRole", f"{expected}-approver-tokenreviews"),
        ("ClusterRoleBinding", f"{expected}-approver-tokenreviews"),
        # The cluster-bootstrap hook's, for the caBundle of this release's configuration only.
        ("ClusterRole", f"{expected}-cluster-bootstrap"),
        ("ClusterRoleBinding", f"{expected}-cluster-bootstrap"),
    }
    bootstrap = found[("ClusterRole", f"{expected}-cluster-bootstrap")]
    assert bootstrap["rules"][0]["resourceNames"] == [expected]
    binding = found[("ClusterRoleBinding", f"{expected}-approver-tokenreviews")]
    assert binding["roleRef"]["name"] == f"{expected}-approver-tokenreviews"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": APPROVER, "namespace": namespace}
    ]
    policy_binding = found[("ValidatingAdmissionPolicyBinding", f"{expected}-token-annotation")]
    assert policy_binding["spec"]["policyName"] == f"{expected}-token-annotation"
    (hook,) = found[("MutatingWebhookConfiguration", expected)]["webhooks"]
    service = hook["clientConfig"]["service"]
    assert (service["name"], service["namespace"]) == (WEBHOOK, namespace)
    chart.named(objects, "Service", WEBHOOK)
    # webhooks[].name: a domain-qualified name (three labels or more).
    assert DNS_SUBDOMAIN.match(hook["name"])
    assert hook["name"].count(".") >= 2
    # The namespaced objects keep the fullname prefix certs-tooling's certificates name.
    assert {d["metadata"]["name"] for d in chart.of_kind(objects, "Deployment")} == {
        WEBHOOK,
        APPROVER,
    }


def test_two_releases_share_no_cluster_scoped_object() -> None:
    """Two releases of the chart, in two namespaces, render disjoint cluster-scoped names."""
    first = _cluster_scoped(chart.render(ALL_CLUSTER_OBJECTS, release="ab-one", namespace="one"))
    second = _cluster_scoped(chart.render(ALL_CLUSTER_OBJECTS, release="ab-two", namespace="two"))
    assert len(first) == len(second) == 7
    assert not set(first) & set(second)


def test_notes_name_the_cluster_scoped_objects() -> None:
    """NOTES.txt names the release's cluster-scoped objects and how to run `helm test`."""
    import helm_python as helm

    with helm.Chart.load(str(chart.CHART_DIR)) as loaded:
        out = loaded.render(ALL_CLUSTER_OBJECTS, name="team-a", namespace="a", is_install=True)
    notes = next(text for path, text in out.items() if path.endswith("NOTES.txt"))
    assert "MutatingWebhookConfiguration team-a-agent-bootstrap\n" in notes
    assert "team-a-agent-bootstrap-token-annotation" in notes
    assert "team-a-agent-bootstrap-approver-tokenreviews" in notes
    assert "helm test team-a --namespace a" in notes


# --- global -----------------------------------------------------------------------------------


def test_global_is_admitted_with_anything_inside() -> None:
    """A parent chart's global values pass the schema (the chart can be a subchart) and change
    nothing; the rest of the schema stays closed."""
    import helm_python as helm

    base = chart.render()
    assert chart.render({"global": {"foo": "bar", "imageRegistry": "r.example"}}) == base
    assert chart.render({"global": {"openshift": False, "nested": {"x": [1]}}}) == base
    with pytest.raises(helm.HelmValuesError):
        chart.render({"globals": {"foo": "bar"}})
    with pytest.raises(helm.HelmValuesError):
        chart.render({"webhook": {"global": {}}})


# --- the helm test Pod ------------------------------------------------------------------------


def _test_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (pod,) = chart.hooks(objects)
    assert pod["kind"] == "Pod"
    assert pod["metadata"]["name"] == TEST_POD
    return pod


def _env(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]
    }


def test_helm_test_pod_least_privilege(case: Case) -> None:
    """One Pod, hook `test`, the chart's image running Python; no service-account token, no
    service links, the webhook's ServiceAccount (no RBAC) and security contexts, resources; it
    reads no Secret but the ca.crt of the serving certificates (cert-manager)."""
    if not case.effective["tests"]["enabled"]:
        assert not chart.hooks(case.objects)
        return
    pod = _test_pod(case.objects)
    annotations = pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    spec = pod["spec"]
    webhook = _pod_template(case.objects, WEBHOOK)["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == WEBHOOK
    account = chart.named(case.objects, "ServiceAccount", WEBHOOK)
    assert account["automountServiceAccountToken"] is False
    for binding in case.objects:
        if binding["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            assert WEBHOOK not in {s["name"] for s in binding["subjects"]}
    assert spec["securityContext"] == webhook["securityContext"]
    (container,) = spec["containers"]
    assert container["securityContext"] == webhook["containers"][0]["securityContext"]
    assert container["image"] == webhook["containers"][0]["image"]
    assert container["command"][:2] == ["/opt/venv/bin/python", "-c"]
    assert container["resources"] == case.effective["tests"]["resources"]
    for volume in spec.get("volumes", []):
        assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], volume


def test_helm_test_pod_checks_both_services(case: Case, pki: Pki) -> None:
    """The URLs are the Services' cluster DNS names (the name the serving certificates carry)
    on their ports, /readyz; the CA is the webhook's (caBundle value, or cert-manager's
    ca.crt); the approver over HTTP when its TLS is off; mTLS expected with apiServerClientCA."""
    if not case.effective["tests"]["enabled"]:
        return
    env = _env(_test_pod(case.objects))
    ns = chart.NAMESPACE
    assert env["WEBHOOK_URL"] == f"https://{WEBHOOK}.{ns}.svc:443/readyz"
    webhook_ports = {
        p["port"] for p in chart.named(case.objects, "Service", WEBHOOK)["spec"]["ports"]
    }
    assert 443 in webhook_ports
    approver = case.effective["approver"]
    scheme = "https" if approver["tls"]["enabled"] else "http"
    assert env["APPROVER_URL"] == f"{scheme}://{APPROVER}.{ns}.svc:{approver['port']}/readyz"
    assert env["WEBHOOK_CLIENT_CERT_REQUIRED"] == (
        "true" if case.effective["webhook"]["apiServerClientCA"]["existingSecret"] else "false"
    )
    tls = case.effective["tls"]
    bootstrapped = (
        case.effective["clusterBootstrap"]["enabled"]
        and not case.effective["keys"]["create"]
        and not (tls["caBundle"] or tls["caBundlePem"])
    )
    if case.effective["certManager"]["enabled"] or bootstrapped:
        # cert-manager's or cluster-bootstrap's ca.crt of the serving Secrets (optional: a
        # Secret made by hand may lack it, and the script then says so).
        assert env["WEBHOOK_CA_FILE"] == "/etc/agent-bootstrap/webhook-ca/ca.crt"
        volumes = {v["name"]: v for v in _test_pod(case.objects)["spec"]["volumes"]}
        assert volumes["webhook-ca"]["secret"]["secretName"] == tls["webhookSecretName"]
        assert volumes["webhook-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        assert volumes["webhook-ca"]["secret"]["optional"] is True
        assert "CA_PEM" not in env
    elif tls["caBundle"] or tls["caBundlePem"]:
        assert env["CA_PEM"] == pki.layout.ca_bundle.read_text()
    else:
        assert "CA_PEM" not in env
        assert "WEBHOOK_CA_FILE" not in env


def test_network_policies_admit_the_test_pod(case: Case) -> None:
    """With NetworkPolicies on, both services' ingress admits the test Pod (by its labels, in
    the release namespace) on their container ports; with tests off, no such rule exists."""
    if not case.effective["networkPolicy"]["enabled"]:
        return
    enabled = case.effective["tests"]["enabled"]
    labels = _test_pod(case.objects)["metadata"]["labels"] if enabled else {}
    for name, port in (
        (WEBHOOK, case.effective["webhook"]["port"]),
        (APPROVER, case.effective["approver"]["port"]),
    ):
        policy = chart.named(case.objects, "NetworkPolicy", name)["spec"]
        admitting = [
            (rule, peer)
            for rule in policy["ingress"]
            for peer in rule["from"]
            if set(peer) == {"podSelector"}  # no namespaceSelector: the release namespace
            and peer["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == "test"
        ]
        assert bool(admitting) == enabled, name
        for rule, peer in admitting:
            assert [p["port"] for p in rule["ports"]] == [port]
            assert chart.matches(peer["podSelector"], labels)
            assert not chart.matches(
                peer["podSelector"], _pod_template(case.objects, WEBHOOK)["metadata"]["labels"]
            )


def test_helm_test_can_be_turned_off() -> None:
    """tests.enabled false: no hook, and the NetworkPolicies lose the rule (test above)."""
    objects = chart.render({"tests": {"enabled": False}})
    assert not chart.hooks(objects)


# --- the test Pod's script, run for real ------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.server.status  # type: ignore[attr-defined]
        self.send_response(code)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"ready")

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def _https_server(
    cert: Path, key: Path, *, status: int = 200, client_ca: Path | None = None
) -> Iterator[int]:
    """A local HTTPS server answering every GET with ``status``; requires a client certificate
    from ``client_ca`` when given. Yields its port."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(client_ca))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.status = status  # type: ignore[attr-defined]
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _run_script(pod: dict[str, Any], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["/opt/venv/bin/python", "-c"]
    return subprocess.run(
        [sys.executable, "-c", command[2]],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def pod_env(pki: Pki) -> tuple[dict[str, Any], dict[str, str]]:
    """The test Pod rendered with the certs-tooling CA, and its env (the CA as rendered)."""
    pod = _test_pod(chart.render({"tls": {"caBundlePem": pki.layout.ca_bundle.read_text()}}))
    env = {k: v for k, v in _env(pod).items() if isinstance(v, str)}
    return pod, env


def test_script_passes_when_both_answer(
    pki: Pki, pod_env: tuple[dict[str, Any], dict[str, str]]
) -> None:
    """Both services ready, certificates from the rendered CA: exit 0."""
    pod, env = pod_env
    with (
        _https_server(pki.webhook_cert, pki.webhook_key) as webhook,
        _https_server(pki.approver_cert, pki.approver_key) as approver,
    ):
        result = _run_script(
            pod,
            {
                **env,
                "WEBHOOK_URL": f"https://localhost:{webhook}/readyz",
                "APPROVER_URL": f"https://localhost:{approver}/readyz",
            },
        )
    assert result.returncode == 0, result.stderr
    assert "webhook:" in result.stdout
    assert "approver:" in result.stdout


def test_script_fails_when_the_approver_is_not_ready(
    pki: Pki, pod_env: tuple[dict[str, Any], dict[str, str]]
) -> None:
    """An approver answering 503 (database down) fails the test."""
    pod, env = pod_env
    with (
        _https_server(pki.webhook_cert, pki.webhook_key) as webhook,
        _https_server(pki.approver_cert, pki.approver_key, status=503) as approver,
    ):
        result = _run_script(
            pod,
            {
                **env,
                "WEBHOOK_URL": f"https://localhost:{webhook}/readyz",
                "APPROVER_URL": f"https://localhost:{approver}/readyz",
            },
        )
    assert result.returncode == 1
    assert "approver" in result.stderr
    assert "503" in result.stderr


def test_script_fails_on_a_certificate_from_another_ca(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A webhook whose certificate the CA does not sign fails the test, as it would fail the
    API server's call."""
    from certs_tooling.cli import main as certs_main

    other = tmp_path_factory.mktemp("other-pki")
    assert certs_main(["init", "--out", str(other), "--local", "--force"]) == 0
    other_ca = Pki(other).layout.ca_bundle.read_text()
    pod = _test_pod(chart.render({"tls": {"caBundlePem": other_ca}}))
    env = {k: v for k, v in _env(pod).items() if isinstance(v, str)}
    with (
        _https_server(pki.webhook_cert, pki.webhook_key) as webhook,
        _https_server(pki.approver_cert, pki.approver_key) as approver,
    ):
        result = _run_script(
            pod,
            {
                **env,
                "WEBHOOK_URL": f"https://localhost:{webhook}/readyz",
                "APPROVER_URL": f"https://localhost:{approver}/readyz",
            },
        )
    assert result.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


def test_script_accepts_a_webhook_that_demands_a_client_certificate(pki: Pki) -> None:
    """webhook.apiServerClientCA: the webhook presents a trusted certificate and then demands
    the API server's client certificate, which the test Pod does not have: that passes."""
    values = {
        "tls": {"caBundlePem": pki.layout.ca_bundle.read_text()},
        "webhook": {"apiServerClientCA": {"existingSecret": "apiserver-client-ca"}},
    }
    pod = _test_pod(chart.render(values))
    env = {k: v for k, v in _env(pod).items() if isinstance(v, str)}
    assert env["WEBHOOK_CLIENT_CERT_REQUIRED"] == "true"
    with (
        _https_server(pki.webhook_cert, pki.webhook_key, client_ca=pki.ca_cert) as webhook,
        _https_server(pki.approver_cert, pki.approver_key) as approver,
    ):
        result = _run_script(
            pod,
            {
                **env,
                "WEBHOOK_URL": f"https://localhost:{webhook}/readyz",
                "APPROVER_URL": f"https://localhost:{approver}/readyz",
            },
        )
    assert result.returncode == 0, result.stderr
    assert "requires a client certificate" in result.stdout


def test_script_refuses_to_run_without_a_ca() -> None:
    """No caBundle and no cert-manager: nothing to verify against, the test fails saying so."""
    pod = _test_pod(chart.render())
    env = {k: v for k, v in _env(pod).items() if isinstance(v, str)}
    result = _run_script(pod, env)
    assert result.returncode == 1
    assert "no CA" in result.stderr


def test_script_fails_when_the_webhook_takes_any_client(pki: Pki) -> None:
    """With webhook.apiServerClientCA set, a webhook that answers a client without a
    certificate fails the test (its client-certificate check is not in force)."""
    values = {
        "tls": {"caBundlePem": pki.layout.ca_bundle.read_text()},
        "webhook": {"apiServerClientCA": {"existingSecret": "apiserver-client-ca"}},
    }
    pod = _test_pod(chart.render(values))
    env = {k: v for k, v in _env(pod).items() if isinstance(v, str)}
    with (
        _https_server(pki.webhook_cert, pki.webhook_key) as webhook,
        _https_server(pki.approver_cert, pki.approver_key) as approver,
    ):
        result = _run_script(
            pod,
            {
                **env,
                "WEBHOOK_URL": f"https://localhost:{webhook}/readyz",
                "APPROVER_URL": f"https://localhost:{approver}/readyz",
            },
        )
    assert result.returncode == 1
    assert "answered a client without a certificate" in result.stderr
