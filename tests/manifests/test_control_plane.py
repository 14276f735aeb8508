"""``controlPlane.type streamspace`` in the chart: the approver as the gate of StreamSpace's agents.

StreamSpace's AGENT_BOOTSTRAP_KEY is a master key for every agent id, and StreamSpace's agent Role
can read the Secrets of its namespace. So with the approver as the gate, no agent pod may reach
StreamSpace's API around it: the chart restricts the agent pods' egress (in StreamSpace's
namespace) to the approver, DNS and the Kubernetes API server, and lets the approver, and only
it, into StreamSpace's API pods. Here: those two policies, the approver's own policy, the
rendering refusals, and an https API with its CA bundle loaded by the approver's own loader.
The ``streamspace`` value set also runs through every test parametrized over value sets
(kubernetes-validate, the approver's loader with its mounts: test_config.check_control_plane).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from tests.manifests import chart
from tests.manifests.conftest import STREAMSPACE_CONTROL_PLANE, TRUSTED, Case
from tests.manifests.test_config import _load, check_control_plane

APPROVER = "agent-bootstrap-approver"
WEBHOOK = "agent-bootstrap-webhook"
API_POLICY = "agent-bootstrap-streamspace-api"
AGENTS_POLICY = "agent-bootstrap-streamspace-agents"

#: Pod labels of StreamSpace's API Deployment (its chart's chart/templates/api-deployment.yaml at
#: the commit of tests/fixtures/streamspace, release ``streamspace``): selector labels plus
#: ``app.kubernetes.io/component: api``.
STREAMSPACE_API_POD_LABELS = {
    "app.kubernetes.io/name": "streamspace",
    "app.kubernetes.io/instance": "streamspace",
    "app.kubernetes.io/component": "api",
}
#: StreamSpace's UI pods (the same chart): never the API, never an agent.
STREAMSPACE_UI_POD_LABELS = {**STREAMSPACE_API_POD_LABELS, "app.kubernetes.io/component": "ui"}

Obj = dict[str, Any]


def _streamspace(**override: Any) -> dict[str, Any]:
    """Chart values: STREAMSPACE_CONTROL_PLANE with ``override`` merged into controlPlane."""
    return {"controlPlane": chart.merge(STREAMSPACE_CONTROL_PLANE, override)}


def _policy(objects: list[Obj], namespace: str, name: str) -> Obj:
    found = [
        o
        for o in chart.of_kind(objects, "NetworkPolicy")
        if o["metadata"]["name"] == name and o["metadata"]["namespace"] == namespace
    ]
    assert len(found) == 1, f"expected one NetworkPolicy {namespace}/{name}, found {len(found)}"
    return cast(Obj, found[0]["spec"])


def _pod_labels(objects: list[Obj], deployment: str) -> dict[str, str]:
    dep = chart.named(objects, "Deployment", deployment)
    return cast(dict[str, str], dep["spec"]["template"]["metadata"]["labels"])


def _peer_matches(peer: Obj, namespace: str, labels: dict[str, str], own_namespace: str) -> bool:
    """Whether a NetworkPolicyPeer with selectors admits a pod (ipBlock peers: False)."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        if not chart.matches(peer["namespaceSelector"], chart.namespace_labels(namespace)):
            return False
    elif namespace != own_namespace:
        return False
    return chart.matches(peer.get("podSelector"), labels)


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"port": p, "protocol": "TCP"} for p in ports]


@pytest.fixture(params=["streamspace", "everything"])
def streamspace(request: pytest.FixtureRequest, cases: dict[str, Case]) -> Case:
    """Each value set with controlPlane streamspace (everything: https, narrowed API server,
    agents.podSelector with an expression, two trusted namespaces, PostgreSQL)."""
    case = cases[request.param]
    assert case.effective["controlPlane"]["type"] == "streamspace"
    return case


class TestAgentEgress:
    """(2): StreamSpace's agent pods reach the gate, DNS and the API server, nothing else."""

    def test_selects_the_agent_pods_only(self, streamspace: Case) -> None:
        """The policy lives in StreamSpace's namespace and selects StreamSpace's real agent pod,
        not its API or UI pods; it isolates their egress only."""
        spec = _policy(streamspace.objects, TRUSTED, AGENTS_POLICY)
        assert chart.matches(spec["podSelector"], chart.streamspace_agent_pod_labels())
        for labels in (STREAMSPACE_API_POD_LABELS, STREAMSPACE_UI_POD_LABELS):
            assert not chart.matches(spec["podSelector"], labels)
        assert spec["policyTypes"] == ["Egress"]
        assert "ingress" not in spec

    def test_allows_exactly_the_approver_dns_and_the_api_server(self, streamspace: Case) -> None:
        """Three rules: the approver pods in the release namespace on the approver port; the
        networkPolicy.dns peers on 53; the kubeApiServer peers on its ports."""
        spec = _policy(streamspace.objects, TRUSTED, AGENTS_POLICY)
        effective = streamspace.effective
        kube = effective["controlPlane"]["streamspace"]["networkPolicy"]["kubeApiServer"]
        assert len(spec["egress"]) == 3
        to_approver, to_dns, to_api_server = spec["egress"]

        assert to_approver["ports"] == _tcp(effective["approver"]["port"])
        (peer,) = to_approver["to"]
        approver_labels = _pod_labels(streamspace.objects, APPROVER)
        assert _peer_matches(peer, chart.NAMESPACE, approver_labels, TRUSTED)
        assert not _peer_matches(
            peer, chart.NAMESPACE, _pod_labels(streamspace.objects, WEBHOOK), TRUSTED
        )
        assert not _peer_matches(peer, "default", approver_labels, TRUSTED)
        assert not _peer_matches(peer, TRUSTED, approver_labels, TRUSTED)

        assert to_dns["to"] == effective["networkPolicy"]["dns"]
        assert sorted(to_dns["ports"], key=lambda p: p["protocol"]) == [
            {"port": 53, "protocol": "TCP"},
            {"port": 53, "protocol": "UDP"},
        ]

        assert to_api_server["to"] == kube["to"]
        assert to_api_server["ports"] == _tcp(*kube["ports"])

    def test_never_reaches_streamspace_api(self, streamspace: Case) -> None:
        """No rule admits StreamSpace's API pods by label, and no rule opens the API port."""
        spec = _policy(streamspace.objects, TRUSTED, AGENTS_POLICY)
        api_port = streamspace.effective["controlPlane"]["streamspace"]["apiPort"]
        for rule in spec["egress"]:
            assert rule["to"], rule
            assert rule["ports"], rule
            assert api_port not in {p["port"] for p in rule["ports"]}, rule
            for peer in rule["to"]:
                assert not _peer_matches(peer, TRUSTED, STREAMSPACE_API_POD_LABELS, TRUSTED)


class TestApiIngress:
    """(1): the approver, and only it, into StreamSpace's API pods."""

    def test_admits_the_approver_on_the_api_port(self, streamspace: Case) -> None:
        spec = _policy(streamspace.objects, TRUSTED, API_POLICY)
        api_port = streamspace.effective["controlPlane"]["streamspace"]["apiPort"]
        assert chart.matches(spec["podSelector"], STREAMSPACE_API_POD_LABELS)
        assert not chart.matches(spec["podSelector"], chart.streamspace_agent_pod_labels())
        assert spec["policyTypes"] == ["Ingress"]
        assert "egress" not in spec
        (rule,) = spec["ingress"]
        assert rule["ports"] == _tcp(api_port)
        (peer,) = rule["from"]
        approver_labels = _pod_labels(streamspace.objects, APPROVER)
        assert _peer_matches(peer, chart.NAMESPACE, approver_labels, TRUSTED)
        webhook_labels = _pod_labels(streamspace.objects, WEBHOOK)
        assert not _peer_matches(peer, chart.NAMESPACE, webhook_labels, TRUSTED)
        agent_labels = chart.streamspace_agent_pod_labels()
        assert not _peer_matches(peer, TRUSTED, agent_labels, TRUSTED)
        assert not _peer_matches(peer, TRUSTED, approver_labels, TRUSTED)


class TestApproverPolicy:
    def test_egress_to_streamspace_api_pods(self, streamspace: Case) -> None:
        """The approver reaches StreamSpace's API pods, in StreamSpace's namespace, on apiPort
        only (not its agents, not another namespace)."""
        spec = _policy(streamspace.objects, chart.NAMESPACE, APPROVER)
        api_port = streamspace.effective["controlPlane"]["streamspace"]["apiPort"]
        rules = [r for r in spec["egress"] if r["ports"] == _tcp(api_port)]
        (rule,) = rules
        (peer,) = rule["to"]
        assert _peer_matches(peer, TRUSTED, STREAMSPACE_API_POD_LABELS, chart.NAMESPACE)
        agent_labels = chart.streamspace_agent_pod_labels()
        assert not _peer_matches(peer, TRUSTED, agent_labels, chart.NAMESPACE)
        assert not _peer_matches(peer, "default", STREAMSPACE_API_POD_LABELS, chart.NAMESPACE)

    @pytest.mark.parametrize("trusted", [[], ["render-farm"]], ids=["manual", "other-trusted"])
    def test_agents_reach_the_gate_when_their_namespace_is_not_trusted(
        self, trusted: list[str]
    ) -> None:
        """Agents under manual approval register through the gate too: the approver admits
        StreamSpace's agent pods (and no other pod there) on its port."""
        values = chart.merge(_streamspace(), {"agents": {"autoApprove": {"namespaces": trusted}}})
        objects = chart.render(values)
        spec = _policy(objects, chart.NAMESPACE, APPROVER)
        agent_labels = chart.streamspace_agent_pod_labels()
        admitted = [
            rule
            for rule in spec["ingress"]
            if any(_peer_matches(p, TRUSTED, agent_labels, chart.NAMESPACE) for p in rule["from"])
        ]
        (rule,) = admitted
        assert rule["ports"] == _tcp(8444)
        for labels in (STREAMSPACE_API_POD_LABELS, STREAMSPACE_UI_POD_LABELS):
            assert not any(_peer_matches(p, TRUSTED, labels, chart.NAMESPACE) for p in rule["from"])


@pytest.mark.parametrize(
    ("values", "namespace", "rendered"),
    [
        ({"networkPolicy": {"enabled": False}}, TRUSTED, set()),
        (
            _streamspace(streamspace={"networkPolicy": {"allowApprover": False}}),
            TRUSTED,
            {AGENTS_POLICY},
        ),
        (
            _streamspace(streamspace={"networkPolicy": {"restrictAgents": False}}),
            TRUSTED,
            {API_POLICY},
        ),
        (
            _streamspace(streamspace={"namespace": "streamspace-prod"}),
            "streamspace-prod",
            {API_POLICY, AGENTS_POLICY},
        ),
    ],
    ids=["network-policy-off", "allow-approver-off", "restrict-agents-off", "other-namespace"],
)
def test_policies_in_streamspace_namespace_follow_the_flags(
    values: dict[str, Any], namespace: str, rendered: set[str]
) -> None:
    """Each policy only with networkPolicy.enabled and its flag, in controlPlane's namespace."""
    objects = chart.render(chart.merge(_streamspace(), values))
    outside = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in chart.of_kind(objects, "NetworkPolicy")
        if o["metadata"]["namespace"] != chart.NAMESPACE
    }
    assert outside == {(namespace, name) for name in rendered}


def test_https_api_with_a_ca_bundle(
    chart_defaults: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An https url with caBundle: the ConfigMap's key is mounted read-only and is caFile, as
    the approver's own loader reads it."""
    values = _streamspace(
        streamspace={
            "url": "https://streamspace-api.streamspace.svc:8443",
            "caBundle": {"existingConfigMap": "streamspace-api-ca", "key": "ca.pem"},
        }
    )
    case = Case(
        name="https",
        values=values,
        effective=chart.merge(chart_defaults, values),
        objects=chart.render(values),
    )
    settings, raw, files = _load(case, "approver", tmp_path, monkeypatch)
    assert (
        raw["controlPlane"]["streamspace"]["caFile"] == "/etc/agent-bootstrap/streamspace-ca/ca.pem"
    )
    check_control_plane(case, settings, raw, files)
    assert settings.control_plane.streamspace is not None
    assert settings.control_plane.streamspace.ca_file is not None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"url": ""}, "controlPlane.streamspace.url"),
        ({"bootstrapKey": {"existingSecret": ""}}, "controlPlane.streamspace.bootstrapKey"),
        ({"admin": {"existingSecret": ""}}, "controlPlane.streamspace.admin.existingSecret"),
        ({"admin": {"usernameKey": "x", "passwordKey": "x"}}, "must be different keys"),
        ({"caBundle": {"existingConfigMap": "ca"}}, "only used with an https url"),
        ({"namespace": chart.NAMESPACE}, f'must not be "{chart.NAMESPACE}"'),
        ({"namespace": "kube-system"}, 'must not be "kube-system"'),
        (
            {"apiPodSelector": {"matchLabels": None}},  # null deletes a default map in Helm
            "non-empty controlPlane.streamspace.apiPodSelector",
        ),
    ],
    ids=[
        "no-url",
        "no-bootstrap-key",
        "no-admin",
        "same-admin-keys",
        "ca-with-http",
        "release-namespace",
        "kube-system",
        "empty-api-selector",
    ],
)
def test_rendering_refuses_incomplete_streamspace_values(
    override: dict[str, Any], message: str
) -> None:
    """type streamspace without the url or one of the Secrets (or with values that would be
    ignored or dangerous) fails with a message naming the value."""
    import helm_python as helm

    with pytest.raises(helm.HelmRenderError, match="controlPlane") as err:
        chart.render(_streamspace(streamspace=override))
    assert message in str(err.value)


def test_rendering_refuses_restricting_every_pod() -> None:
    """restrictAgents with an empty agents.podSelector would restrict every pod of StreamSpace's
    namespace (its API and database too): refused."""
    import helm_python as helm

    values = chart.merge(
        _streamspace(), {"agents": {"podSelector": {"matchLabels": None, "matchExpressions": []}}}
    )
    with pytest.raises(helm.HelmRenderError, match=r"non-empty agents\.podSelector"):
        chart.render(values)


def test_type_none_needs_nothing() -> None:
    """The default type none renders with empty url and Secrets, and adds no mount, config
    section or policy (the kustomize base is unchanged by the feature)."""
    objects = chart.render({"controlPlane": {"streamspace": {"url": ""}}})
    config = chart.named(objects, "ConfigMap", f"{APPROVER}-config")["data"]["approver.yaml"]
    assert "controlPlane" not in config
    assert all(
        o["metadata"]["namespace"] == chart.NAMESPACE
        for o in chart.of_kind(objects, "NetworkPolicy")
    )


@pytest.mark.parametrize(
    "control_plane",
    [
        {"type": "streamspaces"},
        {"budgetSeconds": 10},
        {"budgetSeconds": 2},
        {"syncIntervalSeconds": 0},
        {"timeoutSeconds": 3},  # not a chart value
        {"streamspace": {"url": "http://streamspace-api.streamspace.svc:8000/api"}},
        {"streamspace": {"url": "streamspace-api:8000"}},
        {"streamspace": {"bootstrapKey": {"existingSecret": "Not_A_Secret"}}},
        {"streamspace": {"bootstrapKey": {"key": "a/b"}}},
        {"streamspace": {"admin": {"passwordKey": ""}}},
        {"streamspace": {"admin": {"password": "hunter2"}}},  # never a value
        {"streamspace": {"caBundle": {"existingSecret": "ca"}}},
        {"streamspace": {"namespace": "Not_A_Namespace"}},
        {"streamspace": {"apiPort": 0}},
        {"streamspace": {"apiPodSelector": {"matchLabel": {"a": "b"}}}},
        {"streamspace": {"networkPolicy": {"restrictAgents": "yes"}}},
        {"streamspace": {"networkPolicy": {"kubeApiServer": {"to": [{}], "ports": [443]}}}},
        {"streamspace": {"networkPolicy": {"kubeApiServer": {"ports": []}}}},
    ],
)
def test_schema_rejects_wrong_control_plane_values(control_plane: dict[str, Any]) -> None:
    """values.schema.json refuses the values before any template runs."""
    import helm_python as helm

    with pytest.raises(helm.HelmValuesError):
        chart.render({"controlPlane": control_plane})
