"""injectEnv: the agent's env var points at the token annotation, on real and varied pod specs."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonpatch
import pytest

from bootstrap_token import KeySet, VerificationPolicy, verify
from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import ANNOTATION, NOW
from webhook.errors import MalformedReview
from webhook.inject import EnvInjection, env_var, inject_env
from webhook.review import parse_review
from webhook.signer import TokenSigner
from webhook.stamp import Outcome, StampConfig, decide

VAR = "AGENT_API_KEY"
FIELD_PATH = f"metadata.annotations['{ANNOTATION}']"
INJECTED = env_var(variable=VAR, annotation_key=ANNOTATION)


def secret_ref() -> dict[str, Any]:
    """The chart's own definition (tests/fixtures/streamspace/k8s-agent-deployment.yaml)."""
    return {
        "name": VAR,
        "valueFrom": {
            "secretKeyRef": {"name": "streamspace-secrets", "key": "agent-bootstrap-key"}
        },
    }


def agent_pod() -> dict[str, Any]:
    obj: dict[str, Any] = streamspace_agent_review()["request"]["object"]
    return obj


def containers(obj: dict[str, Any], key: str = "containers") -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"][key]
    return result


def env_absent() -> dict[str, Any]:
    obj = agent_pod()
    del containers(obj)[0]["env"]
    return obj


def env_null() -> dict[str, Any]:
    obj = agent_pod()
    containers(obj)[0]["env"] = None
    return obj


def env_without_variable() -> dict[str, Any]:
    obj = agent_pod()
    containers(obj)[0]["env"] = [e for e in containers(obj)[0]["env"] if e["name"] != VAR]
    return obj


def variable_twice() -> dict[str, Any]:
    obj = agent_pod()
    containers(obj)[0]["env"].insert(0, {"name": VAR, "value": "plain"})
    return obj


def variable_three_times() -> dict[str, Any]:
    """StreamSpace's values for agent-bootstrap add one more (``k8sAgent.extraEnv``), after
    the chart's ``secretKeyRef``; here a third before them both."""
    obj = variable_twice()
    containers(obj)[0]["env"].append(
        {"name": VAR, "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}
    )
    return obj


def with_sidecar_and_init() -> dict[str, Any]:
    obj = agent_pod()
    containers(obj).insert(
        0, {"name": "sidecar", "image": "x", "env": [{"name": VAR, "value": "s"}]}
    )
    obj["spec"]["initContainers"] = [
        {"name": "k8s-agent-init", "image": "x", "env": [{"name": VAR, "value": "i"}]}
    ]
    return obj


def two_agents() -> dict[str, Any]:
    obj = agent_pod()
    second = copy.deepcopy(containers(obj)[0])
    second["name"] = "k8s-agent-2"
    del second["env"]
    containers(obj).append(second)
    return obj


@dataclass(frozen=True)
class Case:
    id: str
    pod: Callable[[], dict[str, Any]]
    names: frozenset[str]
    #: (container list, index) -> expected env after the patch, from the env before it.
    ops: tuple[tuple[str, str], ...]


def replaced(env: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first definition of VAR becomes INJECTED where it stood; later ones are gone."""
    first = next(i for i, e in enumerate(env) if e.get("name") == VAR)
    return [
        INJECTED if i == first else e
        for i, e in enumerate(env)
        if i == first or e.get("name") != VAR
    ]


CASES = [
    Case("chart-secret-ref", agent_pod, frozenset({"k8s-agent"}),
         (("replace", "/spec/containers/0/env/16"),)),
    Case("env-absent", env_absent, frozenset({"k8s-agent"}), (("add", "/spec/containers/0/env"),)),
    Case("env-null", env_null, frozenset({"k8s-agent"}), (("add", "/spec/containers/0/env"),)),
    Case("env-without-variable", env_without_variable, frozenset({"k8s-agent"}),
         (("add", "/spec/containers/0/env/-"),)),
    Case("variable-twice", variable_twice, frozenset({"k8s-agent"}),
         (("replace", "/spec/containers/0/env/0"), ("remove", "/spec/containers/0/env/17"))),
    Case("variable-three-times", variable_three_times, frozenset({"k8s-agent"}),
         (("replace", "/spec/containers/0/env/0"), ("remove", "/spec/containers/0/env/18"),
          ("remove", "/spec/containers/0/env/17"))),
    Case("sidecar-and-init-untouched", with_sidecar_and_init, frozenset({"k8s-agent"}),
         (("replace", "/spec/containers/1/env/16"),)),
    Case("init-container-named", with_sidecar_and_init, frozenset({"k8s-agent", "k8s-agent-init"}),
         (("replace", "/spec/initContainers/0/env/0"), ("replace", "/spec/containers/1/env/16"))),
    Case("several-containers", two_agents, frozenset({"k8s-agent", "k8s-agent-2"}),
         (("replace", "/spec/containers/0/env/16"), ("add", "/spec/containers/1/env"))),
    Case("no-container-named", agent_pod, frozenset({"other"}), ()),
]  # fmt: skip


def expected(before: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """The pod as it should be after injection, built without JSON Patch."""
    after = copy.deepcopy(before)
    for key in ("initContainers", "containers"):
        for container in after["spec"].get(key) or []:
            if container["name"] not in names:
                continue
            env = container.get("env") or []
            if any(e.get("name") == VAR for e in env):
                container["env"] = replaced(env)
            else:
                container["env"] = [*env, INJECTED]
    return after


class TestInjectEnv:
    @pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
    def test_table(self, case: Case) -> None:
        """Each pod spec gets the listed operations; the patch applies and sets only the var."""
        pod = case.pod()
        ops = inject_env(pod, containers=case.names, variable=VAR, annotation_key=ANNOTATION)
        assert tuple((op["op"], op["path"]) for op in ops) == case.ops
        assert jsonpatch.apply_patch(pod, ops) == expected(pod, case.names)

    def test_env_var_shape(self) -> None:
        """The injected variable reads the annotation through the downward API fieldRef."""
        assert INJECTED == {
            "name": VAR,
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": FIELD_PATH}},
        }

    def test_chart_fixture_definition_is_replaced_in_place(self) -> None:
        """The chart's secretKeyRef definition is replaced where it stood, others kept."""
        pod = agent_pod()
        before = containers(pod)[0]["env"]
        assert before[16] == secret_ref()
        ops = inject_env(pod, containers={"k8s-agent"}, variable=VAR, annotation_key=ANNOTATION)
        after = containers(jsonpatch.apply_patch(pod, ops))[0]["env"]
        assert [e["name"] for e in after] == [e["name"] for e in before]
        assert after[16] == INJECTED
        assert after[:16] == before[:16]

    def test_no_spec_no_ops(self) -> None:
        """A pod without spec (not sent by an API server) gets no injection."""
        assert (
            inject_env({}, containers={"k8s-agent"}, variable=VAR, annotation_key=ANNOTATION) == []
        )

    @pytest.mark.parametrize(
        ("spec", "field"),
        [
            ([], "spec"),
            ({"containers": {"name": "k8s-agent"}}, "spec.containers"),
            ({"containers": [{"name": "k8s-agent", "env": {"AGENT_API_KEY": "x"}}]},
             "spec.containers.0.env"),
        ],
        ids=["spec-list", "containers-map", "env-map"],
    )  # fmt: skip
    def test_malformed_shapes(self, spec: Any, field: str) -> None:
        """Wrong JSON types where the patch would go are a malformed pod, not a bad patch."""
        with pytest.raises(MalformedReview) as info:
            inject_env(
                {"spec": spec}, containers={"k8s-agent"}, variable=VAR, annotation_key=ANNOTATION
            )
        assert info.value.reason == "malformed_pod"
        assert field in info.value.message

    def test_other_containers_with_odd_env_are_ignored(self) -> None:
        """A container not named keeps whatever env it has, even an odd one."""
        pod = {"spec": {"containers": [{"name": "x", "env": "odd"}, {"name": "k8s-agent"}]}}
        ops = inject_env(pod, containers={"k8s-agent"}, variable=VAR, annotation_key=ANNOTATION)
        assert ops == [{"op": "add", "path": "/spec/containers/1/env", "value": [INJECTED]}]


class TestThroughDecide:
    @pytest.fixture
    def inject_config(self, stamp_config: StampConfig) -> StampConfig:
        return dataclasses.replace(
            stamp_config, inject_env=EnvInjection(containers=frozenset({"k8s-agent"}), variable=VAR)
        )

    def test_stamped_pod_reads_its_token(
        self, inject_config: StampConfig, signer: TokenSigner, key_set: KeySet
    ) -> None:
        """Real StreamSpace pod: the annotation holds a verifying token; the env var reads it."""
        review = streamspace_agent_review(uid="uid-env")
        request = parse_review(json.dumps(review).encode()).request
        decision = decide(request, config=inject_config, signer=signer, now=NOW)
        assert decision.decision is Outcome.STAMPED
        pod = jsonpatch.apply_patch(review["request"]["object"], decision.patch)
        token = pod["metadata"]["annotations"][ANNOTATION]
        policy = VerificationPolicy(issuer=inject_config.issuer, audience=inject_config.audience)
        assert verify(token, key_set, policy, now=NOW).admission_uid == "uid-env"
        agent_env = {e["name"]: e for e in containers(pod)[0]["env"]}
        assert agent_env[VAR] == INJECTED

    @pytest.mark.parametrize(
        "review",
        [
            lambda: streamspace_agent_review(namespace="sandbox"),
            lambda: streamspace_agent_review(labels={"app": "web"}),
        ],
        ids=["untrusted", "not-agent"],
    )
    def test_only_stamped_pods_are_injected(
        self, inject_config: StampConfig, signer: TokenSigner, review: Callable[[], Any]
    ) -> None:
        """A pod that is not stamped keeps its env untouched (no patch at all)."""
        request = parse_review(json.dumps(review()).encode()).request
        decision = decide(request, config=inject_config, signer=signer, now=NOW)
        assert decision.decision is Outcome.SKIPPED
        assert decision.patch == []

    def test_no_signing_key_no_injection(self, inject_config: StampConfig) -> None:
        """Without a key nothing is stamped, so nothing is pointed at the annotation."""
        request = parse_review(json.dumps(streamspace_agent_review()).encode()).request
        decision = decide(request, config=inject_config, signer=None, now=NOW)
        assert decision.decision is Outcome.NO_SIGNING_KEY
        assert decision.patch == []


class TestOneDefinition:
    """Hardening issue item 10: a variable defined several times ends defined once."""

    @pytest.mark.parametrize("pod", [variable_twice, variable_three_times])
    def test_exactly_one_definition_the_token_at_the_first_place(
        self, pod: Callable[[], dict[str, Any]]
    ) -> None:
        before = pod()
        ops = inject_env(before, containers={"k8s-agent"}, variable=VAR, annotation_key=ANNOTATION)
        env = containers(jsonpatch.apply_patch(before, ops))[0]["env"]
        definitions = [i for i, e in enumerate(env) if e["name"] == VAR]
        assert definitions == [0]
        assert env[0] == INJECTED
        others = [e for e in containers(before)[0]["env"] if e["name"] != VAR]
        assert env[1:] == others  # every other variable kept, in its order
