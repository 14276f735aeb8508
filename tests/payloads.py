"""Real AdmissionReview payloads and variants of them, built in code (the files stay as captured).

``streamspace_agent_review()`` is what the API server sends when the ReplicaSet controller creates
one of StreamSpace's k8s-agent pods: the envelope of the captured ReplicaSet review with the pod
template of StreamSpace's rendered Deployment in ``request.object`` (see
``tests/fixtures/streamspace/README.md``).
"""

from __future__ import annotations

import copy
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import yaml

FIXTURES = Path(__file__).parent / "fixtures"

REPLICASET_REVIEW = "admission/replicaset-pod-generatename.v1beta1.json"
KUBECTL_REVIEW = "admission/kubectl-named-pod.v1beta1.json"
LINKERD_PATCH = "admission/linkerd-injector-patch.json"
STREAMSPACE_DEPLOYMENT = "streamspace/k8s-agent-deployment.yaml"


@cache
def _raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def load_json(name: str) -> Any:
    """A fresh (deep) copy of a JSON fixture."""
    return json.loads(_raw(name))


def streamspace_deployment() -> dict[str, Any]:
    """StreamSpace's k8s-agent Deployment as rendered by its chart."""
    return dict(yaml.safe_load(_raw(STREAMSPACE_DEPLOYMENT)))


def streamspace_agent_review(
    *,
    namespace: str = "streamspace",
    api_version: str = "admission.k8s.io/v1",
    rs_hash: str = "7d9f8b6c5",
    uid: str | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    service_account: str | None = None,
) -> dict[str, Any]:
    """The AdmissionReview for one StreamSpace k8s-agent pod created by its ReplicaSet.

    Args:
        namespace: ``request.namespace`` (the object's own namespace stays unset, as controllers
            leave it).
        api_version: ``admission.k8s.io/v1`` or ``admission.k8s.io/v1beta1``.
        rs_hash: the ReplicaSet's pod-template-hash.
        uid: ``request.uid``; a fresh UUID when None.
        labels: replace the pod's labels (None: the template's labels + pod-template-hash).
        annotations: the pod's annotations (None: no annotation map at all, as in the template).
        service_account: replace ``spec.serviceAccountName``.
    """
    review = load_json(REPLICASET_REVIEW)
    review["apiVersion"] = api_version
    deployment = streamspace_deployment()
    template = copy.deepcopy(deployment["spec"]["template"])
    rs_name = f"{deployment['metadata']['name']}-{rs_hash}"
    meta: dict[str, Any] = {
        "generateName": f"{rs_name}-",
        "creationTimestamp": None,
        "labels": labels
        if labels is not None
        else {**template["metadata"]["labels"], "pod-template-hash": rs_hash},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": rs_name,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, rs_name)),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if annotations is not None:
        meta["annotations"] = annotations
    spec = template["spec"]
    if service_account is not None:
        spec["serviceAccountName"] = service_account
    request = review["request"]
    request["uid"] = uid or str(uuid.uuid4())
    request["namespace"] = namespace
    request["object"] = {"metadata": meta, "spec": spec, "status": {}}
    return dict(review)


STREAMSPACE_REGISTRATION = "streamspace/registration-request.json"


def streamspace_registration() -> dict[str, Any]:
    """The registration request StreamSpace's k8s-agent sends (``method``, ``path``,
    ``headers``, ``body``: the exact bytes as a string); see the fixture's README."""
    return dict(load_json(STREAMSPACE_REGISTRATION))


def streamspace_registration_body(*, agent_id: str | None = None) -> bytes:
    """The fixture's body bytes; with ``agent_id``, the same bytes for another pod's agent id
    (the only member that differs between two pods of one Deployment)."""
    body = str(streamspace_registration()["body"])
    if agent_id is not None:
        original = json.loads(body)["agentId"]
        body = body.replace(json.dumps(original), json.dumps(agent_id), 1)
    return body.encode("utf-8")
