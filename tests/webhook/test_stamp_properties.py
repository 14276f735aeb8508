"""Generated pods: every answer's patch applies and yields exactly the expected pod.

Pods vary in labels, annotation maps (absent, null, empty, with keys holding ``/`` and ``~``,
with a planted token), names, service accounts, namespaces and container env shapes. For each,
the answer goes through the wire encoding (base64 JSON Patch) and is applied with ``jsonpatch``;
the result must equal a model of the expected pod built without JSON Patch: the annotation set
to a token that verifies (trusted) or removed (untrusted), the env var pointing at it in named
containers, and nothing else changed.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from typing import Any

import jsonpatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap_token import KeySet, TrustPolicy, VerificationPolicy, verify
from tests.webhook.conftest import NOW
from webhook.inject import EnvInjection, env_var
from webhook.response import complete, from_decision
from webhook.review import parse_review
from webhook.signer import TokenSigner
from webhook.stamp import Outcome, StampConfig, decide

VAR = "AGENT_API_KEY"
AGENT = {"app.kubernetes.io/component": "k8s-agent"}
KEY_CHARS = st.sampled_from([*"abz09-._/~", "~0", "~1", "/~"])
KEYS = st.lists(KEY_CHARS, min_size=1, max_size=8).map("".join)
VALUES = st.text(max_size=12)
# Our annotation key varies too: a plain name, a prefixed one, one with '~' in the name part
# (not a valid Kubernetes key, but the patch builders must escape it all the same).
ANNOTATION_KEYS = st.sampled_from(
    ["agents.streamspace.io/bootstrap-token", "bootstrap-token", "a/b~c", "x~1y/z~0"]
)


def env_entries() -> st.SearchStrategy[list[Any]]:
    entry = st.one_of(
        st.builds(
            lambda n, v: {"name": n, "value": v}, st.sampled_from([VAR, "OTHER", "X"]), VALUES
        ),
        st.just({"name": VAR, "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
    )
    return st.lists(entry, max_size=4)


@st.composite
def container(draw: st.DrawFn) -> dict[str, Any]:
    result: dict[str, Any] = {
        "name": draw(st.sampled_from(["k8s-agent", "sidecar", "init", "k8s-agent-2"])),
        "image": "x",
    }
    shape = draw(st.sampled_from(["absent", "null", "list"]))
    if shape == "null":
        result["env"] = None
    elif shape == "list":
        result["env"] = draw(env_entries())
    return result


@st.composite
def pod_reviews(draw: st.DrawFn, annotation_key: str) -> dict[str, Any]:
    labels = draw(st.dictionaries(KEYS, VALUES, max_size=4))
    if draw(st.booleans()):
        labels.update(AGENT)
    metadata: dict[str, Any] = {"labels": labels}
    if draw(st.booleans()):
        metadata["name"] = draw(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
    else:
        metadata["generateName"] = draw(st.from_regex(r"[a-z][a-z0-9-]{0,20}-", fullmatch=True))
    annotations = draw(st.sampled_from(["absent", "null", "map"]))
    if annotations == "null":
        metadata["annotations"] = None
    elif annotations == "map":
        metadata["annotations"] = draw(st.dictionaries(KEYS, VALUES, max_size=4))
        if draw(st.booleans()):
            metadata["annotations"][annotation_key] = "planted.token.value"
    if draw(st.booleans()):
        metadata["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u-1",
             "controller": True}
        ]  # fmt: skip
    spec: dict[str, Any] = {"containers": draw(st.lists(container(), min_size=1, max_size=3))}
    if draw(st.booleans()):
        spec["initContainers"] = draw(st.lists(container(), max_size=2))
    if draw(st.booleans()):
        spec["serviceAccountName"] = draw(st.sampled_from(["streamspace-agent", "intruder"]))
    return {
        "apiVersion": draw(st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])),
        "kind": "AdmissionReview",
        "request": {
            "uid": draw(st.uuids()).hex,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": draw(st.sampled_from(["streamspace", "sandbox"])),
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {"metadata": metadata, "spec": spec},
            "dryRun": draw(st.booleans()),
        },
    }


def expected_pod(
    pod: dict[str, Any], *, key: str, token: str | None, names: frozenset[str]
) -> dict[str, Any]:
    """The pod after the webhook: built directly, without JSON Patch."""
    after = copy.deepcopy(pod)
    annotations = after["metadata"].get("annotations")
    if token is None:
        if isinstance(annotations, dict):
            annotations.pop(key, None)
        return after
    after["metadata"]["annotations"] = {**(annotations or {}), key: token}
    injected = env_var(variable=VAR, annotation_key=key)
    for list_name in ("initContainers", "containers"):
        for c in after["spec"].get(list_name) or []:
            if c["name"] not in names:
                continue
            env = c.get("env") or []
            if any(e.get("name") == VAR for e in env):
                # One definition left: the first, now the token (hardening item 10).
                first = next(i for i, e in enumerate(env) if e.get("name") == VAR)
                c["env"] = [
                    injected if i == first else e
                    for i, e in enumerate(env)
                    if i == first or e.get("name") != VAR
                ]
            else:
                c["env"] = [*env, injected]
    return after


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, dict[str, Any], bool, frozenset[str]]:
    key = draw(ANNOTATION_KEYS)
    review = draw(pod_reviews(key))
    allow_list = draw(st.booleans())
    names = frozenset(
        draw(st.sets(st.sampled_from(["k8s-agent", "init", "k8s-agent-2"]), min_size=1))
    )
    return key, review, allow_list, names


class TestGeneratedPods:
    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(scenario=scenarios())
    def test_patch_applies_and_yields_the_expected_pod(
        self,
        scenario: tuple[str, dict[str, Any], bool, frozenset[str]],
        stamp_config: StampConfig,
        signer: TokenSigner,
        key_set: KeySet,
    ) -> None:
        """Any generated pod: the wire patch applies and changes exactly what the rules say."""
        key, review, allow_list, names = scenario
        trust = TrustPolicy(
            namespaces=frozenset({"streamspace"}),
            service_accounts=frozenset({"streamspace:streamspace-agent"})
            if allow_list
            else frozenset(),
        )
        config = dataclasses.replace(
            stamp_config,
            trust=trust,
            annotation_key=key,
            inject_env=EnvInjection(containers=names, variable=VAR),
        )
        request = parse_review(json.dumps(review).encode()).request
        decision = decide(request, config=config, signer=signer, now=NOW)
        response = complete(
            from_decision(decision), api_version=review["apiVersion"], uid=request.uid
        )["response"]
        assert response["uid"] == request.uid
        assert response["allowed"] is True
        pod = review["request"]["object"]
        patch = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
        patched = jsonpatch.apply_patch(pod, patch)

        metadata = pod["metadata"]
        sa = pod["spec"].get("serviceAccountName") or "default"
        trusted = (
            AGENT.items() <= metadata["labels"].items()
            and review["request"]["namespace"] == "streamspace"
            and (not allow_list or sa == "streamspace-agent")
        )
        assert (decision.decision is Outcome.STAMPED) is trusted
        token = patched["metadata"]["annotations"][key] if trusted else None
        assert patched == expected_pod(pod, key=key, token=token, names=names)
        if token is not None:
            claims = verify(
                token,
                key_set,
                VerificationPolicy(issuer=config.issuer, audience=config.audience, trust=trust),
                now=NOW,
            )
            assert claims.admission_uid == request.uid
            assert claims.service_account == sa
            assert claims.jti == response["auditAnnotations"]["jti"]
        else:
            had = isinstance(metadata.get("annotations"), dict) and key in metadata["annotations"]
            assert (decision.decision is Outcome.STRIPPED) is had
