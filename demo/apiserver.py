"""The API server's part, played in code: build the AdmissionReview for StreamSpace's agent pod,
send it to the webhook, apply the returned JSON Patch with ``jsonpatch``, name the pod."""

from __future__ import annotations

import base64
import copy
import json
import secrets
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import yaml

from demo.stack import ANNOTATION

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
REPLICASET_REVIEW = FIXTURES / "admission/replicaset-pod-generatename.v1beta1.json"
STREAMSPACE_DEPLOYMENT = FIXTURES / "streamspace/k8s-agent-deployment.yaml"


def load_deployment(*, env_from_annotation: bool = True) -> dict[str, Any]:
    """StreamSpace's rendered k8s-agent Deployment.

    With ``env_from_annotation`` the one-line chart change is applied: ``AGENT_API_KEY`` comes
    from the bootstrap-token annotation through the downward API instead of from a Secret.
    """
    deployment = yaml.safe_load(STREAMSPACE_DEPLOYMENT.read_text())
    if env_from_annotation:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for var in container.get("env", []):
                if var["name"] == "AGENT_API_KEY":
                    var["valueFrom"] = {
                        "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION}']"}
                    }
    return dict(deployment)


def streamspace_review(
    *,
    namespace: str,
    uid: str,
    rs_hash: str,
    api_version: str = "admission.k8s.io/v1",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The AdmissionReview the API server sends when the ReplicaSet controller creates one of
    StreamSpace's k8s-agent pods (the chart's Deployment with ``AGENT_API_KEY`` read from the
    annotation): :func:`demo.cluster.pod_review` in ``api_version``."""
    from demo.cluster import pod_review

    review = pod_review(
        load_deployment(), namespace=namespace, rs_hash=rs_hash, uid=uid, annotations=annotations
    )
    review["apiVersion"] = api_version
    return review


def generated_name(generate_name: str) -> str:
    """What the API server appends to generateName: five random characters of its alphabet."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return generate_name + "".join(secrets.choice(alphabet) for _ in range(5))


async def admit(
    session: aiohttp.ClientSession,
    webhook_url: str,
    review: dict[str, Any],
    *,
    client_ssl: ssl.SSLContext,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """POST ``review`` to the webhook as the API server does; apply its patch; name the pod.

    Returns:
        (the AdmissionReview ``response``, the pod as it would be persisted).

    Raises:
        AssertionError: the answer breaks the AdmissionReview contract (status, version, uid,
            allowed) — the API server would reject it.
    """
    async with session.post(f"{webhook_url}/mutate", json=review, ssl=client_ssl) as resp:
        answer = await resp.json()
        assert resp.status == 200, answer
    response: dict[str, Any] = answer["response"]
    assert answer["apiVersion"] == review["apiVersion"]
    assert answer["kind"] == "AdmissionReview"
    assert response["uid"] == review["request"]["uid"]
    assert response["allowed"] is True
    pod: dict[str, Any] = copy.deepcopy(review["request"]["object"])
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        pod = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
    metadata = pod.setdefault("metadata", {})
    if "name" not in metadata:
        metadata["name"] = generated_name(metadata["generateName"])
    metadata["namespace"] = review["request"]["namespace"]
    return response, pod
