"""Properties of the rendered objects that keep a cluster safe, for every value set.

Asserted on the parsed objects (not their text): which namespaces and pods the webhook can
select, that it fails open, that every container meets the restricted Pod Security profile,
that RBAC grants nothing beyond the documented list, that NetworkPolicies never open to
"everyone" by accident, and the shape of the custom resources no schema checks.
"""

from __future__ import annotations

import base64
from typing import Any, cast

import pytest

from tests.manifests import chart
from tests.manifests.conftest import SECOND_TRUSTED, TRUSTED, Case

WEBHOOK = "agent-bootstrap-webhook"
APPROVER = "agent-bootstrap-approver"
TEST_POD = "agent-bootstrap-test"


def _webhooks(case: Case) -> list[dict[str, Any]]:
    mwc = chart.maybe(case.objects, "MutatingWebhookConfiguration")
    return mwc["webhooks"] if mwc else []


class TestMutatingWebhook:
    def test_absent_when_nothing_is_trusted(self, cases: dict[str, Case]) -> None:
        """With no trusted namespace there is nothing to stamp and no webhook is registered."""
        assert chart.maybe(cases["defaults"].objects, "MutatingWebhookConfiguration") is None

    def test_one_webhook_when_a_namespace_is_trusted(self, case: Case) -> None:
        """Every value set that trusts a namespace registers exactly one webhook."""
        assert len(_webhooks(case)) == (1 if case.trusted else 0)

    def test_fails_open_and_has_no_side_effects(self, case: Case) -> None:
        """failurePolicy Ignore, sideEffects None, v1 reviews, no reinvocation, short timeout."""
        for hook in _webhooks(case):
            assert hook["failurePolicy"] == "Ignore"
            assert hook["sideEffects"] == "None"
            assert hook["admissionReviewVersions"] == ["v1"]
            assert hook["reinvocationPolicy"] == "Never"
            assert 1 <= hook["timeoutSeconds"] <= 10

    def test_only_pod_create(self, case: Case) -> None:
        """Rules match pod CREATE in the core group, nothing else."""
        for hook in _webhooks(case):
            assert hook["rules"] == [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE"],
                    "resources": ["pods"],
                    "scope": "Namespaced",
                }
            ]

    def test_namespace_selector(self, case: Case) -> None:
        """Trusted namespaces are selected; the release namespace, kube-system and any other
        namespace never are. Only the immutable kubernetes.io/metadata.name label is used."""
        for hook in _webhooks(case):
            selector = hook["namespaceSelector"]
            keys = {e["key"] for e in selector.get("matchExpressions", [])}
            assert keys == {"kubernetes.io/metadata.name"}
            assert "matchLabels" not in selector
            for ns in case.trusted:
                assert chart.matches(selector, chart.namespace_labels(ns)), ns
            for ns in (chart.NAMESPACE, "kube-system", "default", "team-sandbox"):
                assert not chart.matches(selector, chart.namespace_labels(ns)), ns
            # A namespace that copies a trusted one's other labels is still not selected.
            assert not chart.matches(selector, {"kubernetes.io/metadata.name": "x", "a": "b"})

    def test_object_selector_picks_streamspace_agents(self, case: Case) -> None:
        """StreamSpace's real agent pod is selected; the chart's own pods are not."""
        for hook in _webhooks(case):
            selector = hook["objectSelector"]
            assert chart.matches(selector, chart.streamspace_agent_pod_labels())
            for o in case.objects:
                if o["kind"] == "Deployment":
                    labels = o["spec"]["template"]["metadata"]["labels"]
                elif o["kind"] == "Pod":  # the helm test Pod
                    labels = o["metadata"]["labels"]
                else:
                    continue
                assert not chart.matches(selector, labels), o["metadata"]["name"]

    def test_calls_the_webhook_service(self, case: Case) -> None:
        """clientConfig names the webhook Service, on a port that reaches the https listener."""
        for hook in _webhooks(case):
            ref = hook["clientConfig"]["service"]
            assert (ref["name"], ref["namespace"], ref["path"]) == (
                WEBHOOK,
                chart.NAMESPACE,
                "/mutate",
            )
            service = chart.named(case.objects, "Service", WEBHOOK)
            port = next(p for p in service["spec"]["ports"] if p["port"] == ref["port"])
            assert port["targetPort"] == "https"

    def test_ca_bundle_source(self, case: Case, pki: Any) -> None:
        """The caBundle is the certs-tooling CA (base64 or PEM value), or cert-manager injects it
        from the Certificate whose Secret the webhook serves with."""
        for hook in _webhooks(case):
            mwc = chart.maybe(case.objects, "MutatingWebhookConfiguration")
            assert mwc is not None
            annotations = mwc["metadata"].get("annotations", {})
            if case.effective["certManager"]["enabled"]:
                assert "caBundle" not in hook["clientConfig"]
                ns, name = annotations["cert-manager.io/inject-ca-from"].split("/")
                cert = chart.named(case.objects, "Certificate", name)
                assert ns == chart.NAMESPACE
                assert cert["spec"]["secretName"] == case.effective["tls"]["webhookSecretName"]
            elif case.effective["tls"]["caBundle"] or case.effective["tls"]["caBundlePem"]:
                pem = base64.b64decode(hook["clientConfig"]["caBundle"])
                assert pem == pki.layout.ca_bundle.read_bytes()
                assert "cert-manager.io/inject-ca-from" not in annotations
            else:
                assert "caBundle" not in hook["clientConfig"]


@pytest.mark.parametrize(
    "bad",
    [[chart.NAMESPACE], ["kube-system"], [TRUSTED, "kube-system"], [TRUSTED, chart.NAMESPACE]],
)
def test_rendering_refuses_to_trust_the_release_namespace_or_kube_system(bad: list[str]) -> None:
    """Listing the webhook's own namespace or kube-system fails with a message naming it."""
    import helm_python as helm

    with pytest.raises(helm.HelmRenderError, match="must not list") as err:
        chart.render({"agents": {"autoApprove": {"namespaces": bad}}})
    assert any(f'"{ns}"' in str(err.value) for ns in bad)


class TestRestrictedProfile:
    """Kubernetes "Pod Security Standards", restricted profile, on every container."""

    def test_every_container_is_restricted(self, case: Case) -> None:
        """runAsNonRoot, read-only root, no privilege escalation, ALL capabilities dropped,
        seccomp RuntimeDefault; no host namespaces, host paths or host ports."""
        specs = list(chart.pod_specs(case.objects))
        test_pod = {TEST_POD} if case.effective["tests"]["enabled"] else set()
        jobs = {o["metadata"]["name"] for o in case.objects if chart.is_bootstrap(o)} & {
            name for name, _ in specs
        }
        assert {name for name, _ in specs} == {WEBHOOK, APPROVER} | test_pod | jobs
        for name, spec in specs:
            pod_ctx = spec.get("securityContext", {})
            for key in ("hostNetwork", "hostPID", "hostIPC"):
                assert not spec.get(key), (name, key)
            for volume in spec.get("volumes", []):
                assert "hostPath" not in volume, (name, volume["name"])
            for c in chart.containers(spec):
                ctx = c.get("securityContext", {})
                where = f"{name}/{c['name']}"
                assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, where
                uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
                assert uid is None or uid > 0, where
                assert ctx.get("readOnlyRootFilesystem") is True, where
                assert ctx.get("allowPrivilegeEscalation") is False, where
                assert not ctx.get("privileged", False), where
                assert ctx.get("capabilities", {}).get("drop") == ["ALL"], where
                assert not ctx.get("capabilities", {}).get("add"), where
                seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {}))
                assert seccomp.get("type") == "RuntimeDefault", where
                for port in c.get("ports", []):
                    assert "hostPort" not in port, where

    def test_resources_and_probes(self, case: Case) -> None:
        """Every container has CPU and memory requests and limits, and (but the hooks': the helm
        test Pod and the cluster-bootstrap Jobs, which run once) probes on /readyz and /healthz
        at one of its own named ports."""
        hooks = {o["metadata"]["name"] for o in case.objects if chart.is_hook(o)}
        for name, spec in chart.pod_specs(case.objects):
            for c in spec["containers"]:
                for kind in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(c["resources"][kind]), (name, kind)
                if name in hooks:
                    continue
                ports = {p["name"] for p in c["ports"]}
                assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
                assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
                for probe in ("readinessProbe", "livenessProbe"):
                    assert c[probe]["httpGet"]["port"] in ports, (name, probe)

    def test_namespace_enforces_restricted(self, case: Case) -> None:
        """When the chart makes the namespace, Pod Security Admission enforces restricted."""
        for ns in chart.of_kind(case.objects, "Namespace"):
            assert ns["metadata"]["name"] == chart.NAMESPACE
            assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


class TestRbac:
    def _grants(self, case: Case) -> set[tuple[str, str, str, str, str]]:
        """(binding kind, namespace, apiGroup, resource, verb) for every bound rule."""
        objects = chart.without_bootstrap(case.objects)  # see test_cluster_bootstrap.py
        roles = {
            (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
            for o in objects
            if o["kind"] in ("Role", "ClusterRole")
        }
        grants = set()
        for binding in objects:
            if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            ref = binding["roleRef"]
            ns = binding["metadata"].get("namespace", "")
            role = roles[(ref["kind"], ns if ref["kind"] == "Role" else "", ref["name"])]
            for rule in role["rules"]:
                assert "resourceNames" not in rule
                assert "nonResourceURLs" not in rule
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            grants.add((binding["kind"], ns, group, resource, verb))
        return grants

    def test_grants_nothing_beyond_the_list(self, case: Case) -> None:
        """get/list/watch pods and get replicasets (their Deployment) in each trusted namespace
        (Kubernetes access on), create tokenreviews (service-account tokens in tokenreview mode
        on), and nothing else."""
        allowed: set[tuple[str, str, str, str, str]] = set()
        if case.effective["approver"]["kubernetes"]["enabled"]:
            for ns in case.trusted:
                for verb in ("get", "list", "watch"):
                    allowed.add(("RoleBinding", ns, "", "pods", verb))
                allowed.add(("RoleBinding", ns, "apps", "replicasets", "get"))
        sa = case.effective["agents"]["serviceAccountTokens"]
        if sa["enabled"] and sa["mode"] == "tokenreview":
            allowed.add(
                ("ClusterRoleBinding", "", "authentication.k8s.io", "tokenreviews", "create")
            )
        assert self._grants(case) == allowed

    def test_only_the_approver_is_bound(self, case: Case) -> None:
        """Every binding's only subject is the approver's ServiceAccount; the webhook has none
        (the cluster-bootstrap hooks bind their own account: test_cluster_bootstrap.py)."""
        for binding in chart.without_bootstrap(case.objects):
            if binding["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                assert binding["subjects"] == [
                    {"kind": "ServiceAccount", "name": APPROVER, "namespace": chart.NAMESPACE}
                ]

    def test_no_roles_in_the_release_namespace_or_kube_system(self, case: Case) -> None:
        """Pod read access is never granted where the chart's own pods or the control plane run
        (the cluster-bootstrap hooks' Role is in the release namespace, for its own Secrets)."""
        for o in chart.without_bootstrap(case.objects):
            if o["kind"] in ("Role", "RoleBinding"):
                assert o["metadata"]["namespace"] not in (chart.NAMESPACE, "kube-system")

    def test_service_account_tokens_mounted_only_when_used(self, case: Case) -> None:
        """The webhook never gets an API token; the approver only when it calls the API."""
        accounts = {o["metadata"]["name"]: o for o in chart.of_kind(case.objects, "ServiceAccount")}
        specs = dict(chart.pod_specs(case.objects))
        assert accounts[WEBHOOK]["automountServiceAccountToken"] is False
        assert specs[WEBHOOK]["automountServiceAccountToken"] is False
        sa = case.effective["agents"]["serviceAccountTokens"]
        uses_api = bool(
            (case.effective["approver"]["kubernetes"]["enabled"] and case.trusted)
            or (sa["enabled"] and sa["mode"] == "tokenreview")
        )
        assert accounts[APPROVER]["automountServiceAccountToken"] is uses_api
        assert specs[APPROVER]["automountServiceAccountToken"] is uses_api


class TestAvailability:
    def test_webhook_replicas_pdb_and_spread(self, case: Case) -> None:
        """Two webhook replicas, a PDB that keeps one, anti-affinity over nodes."""
        dep = chart.named(case.objects, "Deployment", WEBHOOK)
        assert dep["spec"]["replicas"] == 2
        labels = dep["spec"]["template"]["metadata"]["labels"]
        pdb = chart.named(case.objects, "PodDisruptionBudget", WEBHOOK)
        assert chart.matches(pdb["spec"]["selector"], labels)
        assert 1 <= pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]
        terms = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        assert any(
            t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
            and chart.matches(t["podAffinityTerm"]["labelSelector"], labels)
            for t in terms
        )

    def test_approver_store(self, case: Case) -> None:
        """SQLite: one replica, Recreate, a PVC. PostgreSQL: N replicas, URL from a Secret,
        rolling updates, a PDB."""
        dep = chart.named(case.objects, "Deployment", APPROVER)
        spec = dep["spec"]
        volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
        env = spec["template"]["spec"]["containers"][0].get("env", [])
        database = case.effective["approver"]["database"]
        if database["type"] == "sqlite":
            assert spec["replicas"] == 1
            assert spec["strategy"]["type"] == "Recreate"
            claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
            pvc = chart.named(case.objects, "PersistentVolumeClaim", claim)
            assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
            assert chart.maybe(case.objects, "PodDisruptionBudget") is not None  # the webhook's
        else:
            assert spec["replicas"] == case.effective["approver"]["replicas"] == 3
            assert spec["strategy"]["type"] == "RollingUpdate"
            assert "data" not in volumes
            assert not chart.of_kind(case.objects, "PersistentVolumeClaim")
            (var,) = [v for v in env if v["name"] == "AGENT_BOOTSTRAP_APPROVER_DATABASE_URL"]
            assert var["valueFrom"]["secretKeyRef"] == {
                "name": database["postgresql"]["existingSecret"],
                "key": database["postgresql"]["secretKey"],
            }
            chart.named(case.objects, "PodDisruptionBudget", APPROVER)

    @pytest.mark.parametrize("replicas", [2, 3])
    def test_sqlite_refuses_several_replicas(self, replicas: int) -> None:
        """Several approvers on one SQLite file is refused at render time."""
        import helm_python as helm

        with pytest.raises(helm.HelmRenderError, match="postgresql"):
            chart.render({"approver": {"replicas": replicas}})


class TestNetworkPolicy:
    def _policy(self, case: Case, name: str) -> dict[str, Any]:
        # A rendered (YAML) object: its spec is a mapping, typed as Any.
        return cast(dict[str, Any], chart.named(case.objects, "NetworkPolicy", name)["spec"])

    def test_never_open_to_everyone_by_accident(self, case: Case) -> None:
        """Both components deny by default, and no rule has a missing or empty peer list (which
        Kubernetes reads as "everyone")."""
        for name in (WEBHOOK, APPROVER):
            spec = self._policy(case, name)
            assert spec["policyTypes"] == ["Ingress", "Egress"]
            dep = chart.named(case.objects, "Deployment", name)
            assert chart.matches(spec["podSelector"], dep["spec"]["template"]["metadata"]["labels"])
            for rule in spec["ingress"]:
                assert rule.get("from"), (name, rule)
                assert rule.get("ports"), (name, rule)
            for rule in spec["egress"]:
                assert rule.get("to"), (name, rule)
                assert rule.get("ports"), (name, rule)

    def test_webhook_ingress_on_its_ports_and_no_egress(self, case: Case) -> None:
        """The webhook accepts its HTTPS port (and metrics, when scrapers are named) and calls
        nothing at all."""
        spec = self._policy(case, WEBHOOK)
        ports = {p["port"] for rule in spec["ingress"] for p in rule["ports"]}
        assert case.effective["webhook"]["port"] in ports
        assert ports <= {
            case.effective["webhook"]["port"],
            case.effective["webhook"]["metricsPort"],
        }
        assert spec["egress"] == []

    def test_approver_ingress_from_agent_namespaces_only_on_its_port(self, case: Case) -> None:
        """Agents of the trusted (and listed) namespaces reach the approver port, nothing else."""
        spec = self._policy(case, APPROVER)
        port = case.effective["approver"]["port"]
        metrics = case.effective["approver"]["metricsPort"]
        scrapers = case.effective["networkPolicy"]["metrics"]["from"]
        agent_rules = []
        for rule in spec["ingress"]:
            if [p["port"] for p in rule["ports"]] == [metrics]:
                assert rule["from"] == scrapers  # Prometheus only, on the metrics port
                continue
            assert [p["port"] for p in rule["ports"]] == [port]
            agent_rules.append(rule)
        peers = [peer for rule in agent_rules for peer in rule["from"]]
        extra = case.effective["networkPolicy"]["approver"]["namespaces"]
        for ns in [*case.trusted, *extra]:
            assert any(
                "podSelector" not in p
                and chart.matches(p.get("namespaceSelector"), chart.namespace_labels(ns))
                for p in peers
            ), ns
        for ns in ("default", "kube-system"):
            assert not any(
                "namespaceSelector" in p
                and "podSelector" not in p
                and chart.matches(p["namespaceSelector"], chart.namespace_labels(ns))
                for p in peers
            ), ns

    def test_approver_egress_only_what_it_needs(self, case: Case) -> None:
        """DNS; the API server only when the approver uses it; PostgreSQL only when used;
        StreamSpace's API pods only with controlPlane streamspace."""
        spec = self._policy(case, APPROVER)
        ports = [
            sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in spec["egress"]
        ]
        dns = sorted([(53, "TCP"), (53, "UDP")])
        assert dns in ports
        np = case.effective["networkPolicy"]
        api = sorted((p, "TCP") for p in np["apiServerEgress"]["ports"])
        sa = case.effective["agents"]["serviceAccountTokens"]
        uses_api = bool(
            (case.effective["approver"]["kubernetes"]["enabled"] and case.trusted) or sa["enabled"]
        )
        assert (api in ports) == uses_api
        postgres = [(np["postgresql"]["port"], "TCP")]
        uses_pg = case.effective["approver"]["database"]["type"] == "postgresql"
        assert (postgres in ports) == uses_pg
        control_plane = case.effective["controlPlane"]
        uses_cp = control_plane["type"] == "streamspace"
        assert ([(control_plane["streamspace"]["apiPort"], "TCP")] in ports) == uses_cp
        assert len(ports) == 1 + uses_api + uses_pg + uses_cp

    def test_nothing_outside_the_release_namespace_without_a_control_plane(
        self, case: Case
    ) -> None:
        """Every namespaced object is in the release namespace, except the NetworkPolicies in
        StreamSpace's namespace that controlPlane streamspace renders (test_control_plane.py)."""
        outside = {
            (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
            for o in case.objects
            if o["metadata"].get("namespace", chart.NAMESPACE) != chart.NAMESPACE
            and o["kind"] not in ("Role", "RoleBinding")  # per trusted namespace, TestRbac
        }
        control_plane = case.effective["controlPlane"]
        if control_plane["type"] != "streamspace" or not case.effective["networkPolicy"]["enabled"]:
            assert outside == set()
            return
        flags = control_plane["streamspace"]["networkPolicy"]
        ns = control_plane["streamspace"]["namespace"]
        expected = set()
        if flags["allowApprover"]:
            expected.add(("NetworkPolicy", ns, "agent-bootstrap-streamspace-api"))
        if flags["restrictAgents"]:
            expected.add(("NetworkPolicy", ns, "agent-bootstrap-streamspace-agents"))
        assert outside == expected


class TestCustomResources:
    """Shapes of the objects kubernetes-validate has no schema for."""

    def test_service_monitor(self, case: Case) -> None:
        """Only when enabled; one per service with a metrics port, selecting that Service's
        metrics port at /metrics."""
        monitors = {m["metadata"]["name"]: m for m in chart.of_kind(case.objects, "ServiceMonitor")}
        enabled = case.effective["metrics"]["serviceMonitor"]["enabled"]
        expected = {
            name
            for name, component in ((WEBHOOK, "webhook"), (APPROVER, "approver"))
            if enabled and case.effective[component]["metricsPort"]
        }
        assert set(monitors) == expected
        for name, sm in monitors.items():
            service = chart.named(case.objects, "Service", name)
            assert sm["apiVersion"] == "monitoring.coreos.com/v1"
            assert sm["metadata"]["namespace"] == chart.NAMESPACE
            for key, value in case.effective["metrics"]["serviceMonitor"]["labels"].items():
                assert sm["metadata"]["labels"][key] == value
            assert sm["spec"]["namespaceSelector"] == {"matchNames": [chart.NAMESPACE]}
            assert chart.matches(sm["spec"]["selector"], service["metadata"]["labels"])
            port_names = {p["name"] for p in service["spec"]["ports"]}
            for endpoint in sm["spec"]["endpoints"]:
                assert set(endpoint) <= {"port", "path", "scheme", "interval"}
                assert endpoint["port"] in port_names
                assert (endpoint["path"], endpoint["scheme"]) == ("/metrics", "http")

    def test_cert_manager(self, case: Case) -> None:
        """Only when enabled: a Certificate per TLS Secret the pods mount, with the Service DNS
        names, from the named issuer or the chart's own private CA."""
        certs = {c["metadata"]["name"]: c for c in chart.of_kind(case.objects, "Certificate")}
        issuers = {i["metadata"]["name"]: i for i in chart.of_kind(case.objects, "Issuer")}
        cm = case.effective["certManager"]
        if not cm["enabled"]:
            assert not certs
            assert not issuers
            return
        for obj in [*certs.values(), *issuers.values()]:
            assert obj["apiVersion"] == "cert-manager.io/v1"
            assert obj["metadata"]["namespace"] == chart.NAMESPACE
        for service, secret in (
            (WEBHOOK, case.effective["tls"]["webhookSecretName"]),
            (APPROVER, case.effective["tls"]["approverSecretName"]),
        ):
            spec = certs[service]["spec"]
            assert spec["secretName"] == secret
            assert f"{service}.{chart.NAMESPACE}.svc" in spec["dnsNames"]
            assert "server auth" in spec["usages"]
            assert spec["privateKey"]["rotationPolicy"] == "Always"
            ref = spec["issuerRef"]
            if cm["issuerRef"]["name"]:
                assert ref == cm["issuerRef"]
            else:
                assert ref["kind"] == "Issuer"
                assert "ca" in issuers[ref["name"]]["spec"]
                ca_secret = issuers[ref["name"]]["spec"]["ca"]["secretName"]
                ca_cert = next(c for c in certs.values() if c["spec"]["secretName"] == ca_secret)
                assert ca_cert["spec"]["isCA"] is True
                assert "selfSigned" in issuers[ca_cert["spec"]["issuerRef"]["name"]]["spec"]


class TestKeys:
    def test_created_secrets_match_certs_tooling_names(self, case: Case, pki: Any) -> None:
        """keys.create makes what `certs-tooling k8s-manifests` makes: same names and keys."""
        secrets = {s["metadata"]["name"]: s for s in chart.of_kind(case.objects, "Secret")}
        keys = case.effective["keys"]
        if not keys["create"]:
            assert not secrets
            assert not [
                c for c in chart.of_kind(case.objects, "ConfigMap") if "jwks.json" in c["data"]
            ]
            return
        jwks = chart.named(case.objects, "ConfigMap", keys["jwksConfigMapName"])
        assert jwks["data"]["jwks.json"] == pki.jwks.read_text()
        signing = secrets[
            keys["signingKeySecretName"]
            or (
                "agent-bootstrap-signing-key"
                if case.effective["certManager"]["enabled"]
                else "agent-bootstrap-webhook-tls"
            )
        ]
        assert base64.b64decode(signing["data"]["signing.key"]) == pki.signing_key.read_bytes()
        if not case.effective["certManager"]["enabled"]:
            webhook = secrets["agent-bootstrap-webhook-tls"]
            assert webhook["type"] == "kubernetes.io/tls"
            assert set(webhook["data"]) == {"tls.crt", "tls.key", "signing.key"}
            assert set(secrets["agent-bootstrap-approver-tls"]["data"]) == {"tls.crt", "tls.key"}
        else:
            assert set(secrets) == {"agent-bootstrap-signing-key"}


class TestValuesSchema:
    @pytest.mark.parametrize(
        "values",
        [
            {"unknownTopLevel": 1},
            {"agents": {"autoApprove": {"namespace": ["streamspace"]}}},  # misspelt key
            {"agents": {"autoApprove": {"enabled": "yes"}}},
            {"agents": {"autoApprove": {"enabled": True}}},  # no namespace to trust
            {"agents": {"autoApprove": {"namespaces": ["Not_A_Namespace"]}}},
            {"agents": {"autoApprove": {"namespaces": "streamspace"}}},
            {"agents": {"tokenTtlSeconds": 60}},
            {"agents": {"tokenTtlSeconds": "3600"}},
            {"agents": {"annotationKey": "bad key'"}},
            {"agents": {"serviceAccounts": ["no-colon"]}},
            {"agents": {"injectEnv": {"variable": "1BAD"}}},
            {"agents": {"podSelector": {"matchLabel": {"a": "b"}}}},
            {"webhook": {"replicas": "2"}},
            {"webhook": {"timeoutSeconds": 31}},
            {"webhook": {"resources": {"requests": {"gpu": 1}}}},
            {"webhook": {"apiServerClientCA": "apiserver-client-ca"}},
            {"webhook": {"apiServerClientCA": {"existingSecret": "Not_A_Secret"}}},
            {"webhook": {"apiServerClientCA": {"key": ""}}},
            {"webhook": {"apiServerClientCA": {"key": "ca/crt"}}},
            {"webhook": {"apiServerClientCA": {"secretName": "apiserver-client-ca"}}},
            {"approver": {"database": {"type": "mysql"}}},
            {"approver": {"database": {"postgresql": {"password": "x"}}}},
            {"networkPolicy": {"apiServer": [{"ipBlok": {"cidr": "10.0.0.0/8"}}]}},
            {"networkPolicy": {"apiServer": [{}]}},
            {"certManager": {"issuerRef": {"kind": "Vault"}}},
            {"image": {"digest": "latest"}},
            {"metrics": {"serviceMonitor": {"interval": "soon"}}},
        ],
    )
    def test_rejects_wrong_types_and_unknown_keys(self, values: dict[str, Any]) -> None:
        """values.schema.json refuses the values before any template runs."""
        import helm_python as helm

        with pytest.raises(helm.HelmValuesError):
            chart.render(values)

    def test_every_object_in_the_schema_is_closed(self) -> None:
        """additionalProperties is false on every object with named properties (maps of
        labels, annotations and node selectors type their values instead), except Helm's
        ``global``, which a parent chart fills with anything (test_chart_knobs.py)."""
        import json

        schema = json.loads((chart.CHART_DIR / "values.schema.json").read_text())
        assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"

        def walk(node: Any, path: str) -> None:
            if isinstance(node, dict):
                if "properties" in node and path != "#/properties/global":
                    assert node.get("additionalProperties") is False, path
                for key, value in node.items():
                    if key not in ("if", "then", "else"):  # conditions, not object shapes
                        walk(value, f"{path}/{key}")
            elif isinstance(node, list):
                for i, value in enumerate(node):
                    walk(value, f"{path}/{i}")

        walk(schema, "#")

    def test_every_default_value_is_in_the_schema(self, chart_defaults: dict[str, Any]) -> None:
        """values.yaml validates against the schema (Helm checks it on every render)."""
        assert chart.render({})  # would raise on a schema violation
        assert chart_defaults["agents"]["autoApprove"]["enabled"] is False
        assert chart_defaults["agents"]["autoApprove"]["namespaces"] == []


@pytest.mark.parametrize("trusted", [[TRUSTED], [TRUSTED, SECOND_TRUSTED]])
def test_trusted_namespaces_drive_every_object(trusted: list[str]) -> None:
    """One list of namespaces feeds the webhook selector, the Roles, the NetworkPolicy and the
    admission policy alike."""
    objects = chart.render({"agents": {"autoApprove": {"enabled": True, "namespaces": trusted}}})
    (hook,) = chart.of_kind(objects, "MutatingWebhookConfiguration")[0]["webhooks"]
    assert {
        ns for ns in trusted if chart.matches(hook["namespaceSelector"], chart.namespace_labels(ns))
    } == set(trusted)
    roles = chart.of_kind(chart.without_bootstrap(objects), "Role")
    assert {r["metadata"]["namespace"] for r in roles} == set(trusted)
    vap = chart.of_kind(objects, "ValidatingAdmissionPolicy")[0]
    trusted_expr = next(v for v in vap["spec"]["variables"] if v["name"] == "trustedNamespace")
    for ns in trusted:
        assert f"'{ns}'" in trusted_expr["expression"]
