"""agentProxy: the agent proxy sidecar injected into stamped agent pods that opt in, on the real
StreamSpace agent pod (its chart's Deployment), checked by applying the patch and validating the
result against the Pod schema of the Kubernetes API."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jsonpatch
import pytest

from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import NOW
from webhook.config import WebhookSettings
from webhook.inject import EnvInjection
from webhook.review import parse_review
from webhook.server import stamp_config
from webhook.sidecar import (
    CA_VOLUME,
    OPT_IN_ANNOTATION,
    SIDECAR_NAME,
    STATE_VOLUME,
    ProxyInjection,
    inject_proxy,
)
from webhook.signer import TokenSigner
from webhook.stamp import Outcome, StampConfig, decide

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed (the test extra)"
)

PROXY = ProxyInjection(
    image="ghcr.io/example/agent-bootstrap:0.1.0",
    upstream_url="https://agent-bootstrap-approver.agent-bootstrap.svc:8444",
    containers=frozenset({"k8s-agent"}),
)
OPTED_IN = {OPT_IN_ANNOTATION: "true"}


@pytest.fixture
def proxy_config(stamp_config: StampConfig) -> StampConfig:
    return dataclasses.replace(stamp_config, proxy=PROXY)


def stamped(review: dict[str, Any], config: StampConfig, signer: TokenSigner) -> dict[str, Any]:
    request = parse_review(json.dumps(review).encode()).request
    decision = decide(request, config=config, signer=signer, now=NOW)
    assert decision.decision is Outcome.STAMPED
    pod: dict[str, Any] = jsonpatch.apply_patch(review["request"]["object"], decision.patch)
    return pod


def valid_pod(pod: dict[str, Any]) -> None:
    """The patched pod as the API server would store it: valid against the Pod schema."""
    obj = {"apiVersion": "v1", "kind": "Pod", **pod}
    obj["metadata"] = {"name": "agent", "namespace": "streamspace", **obj.get("metadata", {})}
    kubernetes_validate.validate(obj, "1.35", strict=True)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


class TestInjected:
    def test_sidecar_volumes_and_the_agents_url(
        self, proxy_config: StampConfig, signer: TokenSigner
    ) -> None:
        pod = stamped(streamspace_agent_review(annotations=OPTED_IN), proxy_config, signer)
        valid_pod(pod)
        sidecar = pod["spec"]["initContainers"][0]
        assert sidecar["name"] == SIDECAR_NAME
        assert sidecar["restartPolicy"] == "Always"  # a native sidecar
        assert sidecar["image"] == PROXY.image
        assert sidecar["command"] == ["agent-bootstrap-agent-proxy"]
        assert env_of(sidecar) == {
            "AGENT_BOOTSTRAP_PROXY_UPSTREAM_URL": PROXY.upstream_url,
            "AGENT_BOOTSTRAP_PROXY_CA_FILE": "/etc/agent-bootstrap-proxy/ca/ca.crt",
            "AGENT_BOOTSTRAP_PROXY_LISTEN_HOST": "127.0.0.1",
            "AGENT_BOOTSTRAP_PROXY_LISTEN_PORT": "8480",
            "AGENT_BOOTSTRAP_PROXY_STATE_DIR": "/var/run/agent-bootstrap-proxy",
        }
        assert sidecar["startupProbe"]["tcpSocket"] == {"host": "127.0.0.1", "port": 8480}
        security = sidecar["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes[STATE_VOLUME]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}
        assert volumes[CA_VOLUME]["configMap"]["name"] == "agent-bootstrap-ca"
        agent = next(c for c in pod["spec"]["containers"] if c["name"] == "k8s-agent")
        urls = [e for e in agent["env"] if e["name"] == "CONTROL_PLANE_URL"]
        assert urls == [{"name": "CONTROL_PLANE_URL", "value": "ws://127.0.0.1:8480"}]

    def test_existing_init_containers_and_volumes_are_kept(
        self, proxy_config: StampConfig, signer: TokenSigner
    ) -> None:
        review = streamspace_agent_review(annotations=OPTED_IN)
        spec = review["request"]["object"]["spec"]
        spec["initContainers"] = [{"name": "wait", "image": "busybox"}]
        spec.setdefault("volumes", []).append({"name": "scratch", "emptyDir": {}})
        before = [v["name"] for v in spec["volumes"]]
        pod = stamped(review, proxy_config, signer)
        valid_pod(pod)
        assert [c["name"] for c in pod["spec"]["initContainers"]] == [SIDECAR_NAME, "wait"]
        assert [v["name"] for v in pod["spec"]["volumes"]] == [*before, STATE_VOLUME, CA_VOLUME]

    def test_not_twice(self, proxy_config: StampConfig, signer: TokenSigner) -> None:
        """A pod that already has the sidecar (reinvocation) gets no second one."""
        pod = stamped(streamspace_agent_review(annotations=OPTED_IN), proxy_config, signer)
        assert inject_proxy(pod, PROXY) == []


class TestNotInjected:
    @pytest.mark.parametrize("value", [None, "false", "True", "yes", ""])
    def test_without_the_opt_in(
        self, proxy_config: StampConfig, signer: TokenSigner, value: str | None
    ) -> None:
        annotations = {OPT_IN_ANNOTATION: value} if value is not None else None
        pod = stamped(streamspace_agent_review(annotations=annotations), proxy_config, signer)
        assert "initContainers" not in pod["spec"]
        agent = next(c for c in pod["spec"]["containers"] if c["name"] == "k8s-agent")
        assert "ws://127.0.0.1:8480" not in json.dumps(agent)

    def test_untrusted_pod_gets_nothing(
        self, proxy_config: StampConfig, signer: TokenSigner
    ) -> None:
        review = streamspace_agent_review(namespace="sandbox", annotations=OPTED_IN)
        request = parse_review(json.dumps(review).encode()).request
        decision = decide(request, config=proxy_config, signer=signer, now=NOW)
        assert decision.decision is Outcome.SKIPPED
        assert decision.patch == []


class TestSettings:
    def test_enabled_needs_image_and_upstream(self) -> None:
        with pytest.raises(ValueError, match=r"agentProxy\.image and agentProxy\.upstreamUrl"):
            WebhookSettings(signing_key_file="k", agent_proxy={"enabled": True})

    def test_http_upstream_refused(self) -> None:
        with pytest.raises(ValueError, match="upstreamUrl"):
            WebhookSettings(
                signing_key_file="k",
                agent_proxy={"enabled": True, "image": "i", "upstreamUrl": "http://approver"},
            )

    def test_settings_become_the_stamp_config(self) -> None:
        settings = WebhookSettings(
            signing_key_file="k",
            tls_pem_file="p",
            agent_proxy={
                "enabled": True,
                "image": "img:1",
                "upstreamUrl": "https://approver:8444",
                "port": 9000,
            },
        )
        proxy = stamp_config(settings).proxy
        assert proxy is not None
        assert (proxy.image, proxy.upstream_url, proxy.agent_url) == (
            "img:1",
            "https://approver:8444",
            "ws://127.0.0.1:9000",
        )
        plain = WebhookSettings(signing_key_file="k", tls_pem_file="p")
        assert stamp_config(plain).proxy is None


class TestWithInjectEnv:
    """injectEnv and agentProxy on the same pod: both variables end up defined, once, whatever
    env the agent container came with, and an init container named in injectEnv keeps its token
    although the sidecar is inserted before it."""

    @pytest.fixture
    def both(self, stamp_config: StampConfig) -> StampConfig:
        return dataclasses.replace(
            stamp_config,
            proxy=PROXY,
            inject_env=EnvInjection(
                containers=frozenset({"k8s-agent", "k8s-agent-init"}), variable="AGENT_API_KEY"
            ),
        )

    @pytest.mark.parametrize("env", ["absent", "null", "env-from-only", "both-defined-twice"])
    def test_both_variables_once(self, both: StampConfig, signer: TokenSigner, env: str) -> None:
        review = streamspace_agent_review(annotations=OPTED_IN)
        agent = review["request"]["object"]["spec"]["containers"][0]
        if env == "absent":
            del agent["env"]
        elif env == "null":
            agent["env"] = None
        elif env == "env-from-only":
            del agent["env"]
            agent["envFrom"] = [{"configMapRef": {"name": "agent-settings"}}]
        else:
            agent["env"] = [
                {"name": "CONTROL_PLANE_URL", "value": "wss://a"},
                {"name": "AGENT_API_KEY", "value": "x"},
                {"name": "OTHER", "value": "$(CONTROL_PLANE_URL)"},
                {"name": "CONTROL_PLANE_URL", "value": "wss://b"},
                {"name": "AGENT_API_KEY", "value": "y"},
            ]
        pod = stamped(review, both, signer)
        valid_pod(pod)
        names = [e["name"] for e in pod["spec"]["containers"][0]["env"]]
        assert names.count("AGENT_API_KEY") == 1
        assert names.count("CONTROL_PLANE_URL") == 1
        values = env_of(pod["spec"]["containers"][0])
        assert values["CONTROL_PLANE_URL"] == "ws://127.0.0.1:8480"
        assert values["AGENT_API_KEY"]["fieldRef"]["fieldPath"].startswith("metadata.annotations")
        if env == "both-defined-twice":  # kept where it stood, before its user
            assert names[:3] == ["CONTROL_PLANE_URL", "AGENT_API_KEY", "OTHER"]

    def test_init_container_keeps_its_token(self, both: StampConfig, signer: TokenSigner) -> None:
        review = streamspace_agent_review(annotations=OPTED_IN)
        review["request"]["object"]["spec"]["initContainers"] = [
            {
                "name": "k8s-agent-init",
                "image": "x",
                "env": [{"name": "AGENT_API_KEY", "value": "i"}],
            }
        ]
        pod = stamped(review, both, signer)
        valid_pod(pod)
        init = pod["spec"]["initContainers"]
        assert [c["name"] for c in init] == [SIDECAR_NAME, "k8s-agent-init"]
        assert "fieldRef" in env_of(init[1])["AGENT_API_KEY"]
        assert "AGENT_API_KEY" not in env_of(init[0])


def test_the_same_variable_for_token_and_url_is_refused() -> None:
    with pytest.raises(ValueError, match=r"agentProxy\.urlVariable and injectEnv\.variable"):
        WebhookSettings(
            signing_key_file="k",
            tls_pem_file="p",
            inject_env={"enabled": True, "variable": "CONTROL_PLANE_URL"},
            agent_proxy={"enabled": True, "image": "i", "upstreamUrl": "https://a:1"},
        )
