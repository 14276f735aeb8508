"""The cluster's part, played in code: StreamSpace's chart rendering its agent Deployment with
the values of docs/streamspace.md, the API server admitting each pod through the webhook and
storing it (in the Kubernetes API stand-in the approver reads), and the kubelet resolving the
agent container's environment.

What each step follows:

* the Deployment is StreamSpace's own, rendered by its chart (``tests/fixtures/streamspace``);
  :func:`streamspace_deployment` applies the chart *values* the guide sets: ``k8sAgent.config.
  controlPlaneUrl`` (the ``CONTROL_PLANE_URL`` value) and ``k8sAgent.extraEnv`` (appended after
  the chart's own variables, as its template renders them);
* the API server sends the webhook an AdmissionReview (the captured ReplicaSet envelope), applies
  the returned JSON Patch (``jsonpatch``), names the pod (``generateName`` + 5 characters) and
  gives it a UID and an address of its own (``status.podIP``, on loopback 127.0.x.y, which its
  agent connects from); a pod created while the webhook is down is stored as sent
  (``failurePolicy: Ignore``);
* the kubelet resolves ``env`` in order, later definitions of a name winning, ``$(VAR)``
  references expanded from earlier ones, ``fieldRef`` through the downward API
  (``metadata.name``, ``metadata.namespace``, ``metadata.uid``, ``metadata.annotations['k']``)
  and ``secretKeyRef`` from the Secrets it is given (Kubernetes "Define Dependent Environment
  Variables", "Expose Pod Information to Containers Through Environment Variables").
"""

from __future__ import annotations

import copy
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import yaml

from demo.apiserver import REPLICASET_REVIEW, STREAMSPACE_DEPLOYMENT, admit, generated_name
from tests.kube_api import KubeApi

Json = dict[str, Any]
AGENT_CONTAINER = "k8s-agent"


def streamspace_deployment(
    *, control_plane_url: str | None = None, extra_env: list[Json] | None = None
) -> Json:
    """StreamSpace's k8s-agent Deployment, as its chart renders it with these values.

    Args:
        control_plane_url: ``k8sAgent.config.controlPlaneUrl`` (None: the chart's default).
        extra_env: ``k8sAgent.extraEnv``, appended after the chart's variables.
    """
    deployment: Json = yaml.safe_load(STREAMSPACE_DEPLOYMENT.read_text())
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        if container["name"] != AGENT_CONTAINER:
            continue
        for var in container["env"]:
            if var["name"] == "CONTROL_PLANE_URL" and control_plane_url is not None:
                var["value"] = control_plane_url
        container["env"].extend(copy.deepcopy(extra_env or []))
    return deployment


def guide_values_env(*, ca_file: str | None = None) -> list[Json]:
    """``k8sAgent.extraEnv`` of docs/streamspace.md: ``AGENT_API_KEY`` from the pod's UID (so
    no pod gets the shared key), and ``SSL_CERT_FILE`` when the agent must trust a private CA."""
    env: list[Json] = [
        {"name": "AGENT_API_KEY", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}
    ]
    if ca_file is not None:
        env.append({"name": "SSL_CERT_FILE", "value": ca_file})
    return env


def pod_review(
    deployment: Json,
    *,
    namespace: str,
    rs_hash: str,
    uid: str | None = None,
    annotations: dict[str, str] | None = None,
) -> Json:
    """The AdmissionReview the API server sends when the ReplicaSet controller creates a pod of
    ``deployment``: the captured envelope, the pod template, ``generateName``, the controller
    owner, no name, no UID."""
    review: Json = json.loads(REPLICASET_REVIEW.read_text())
    review["apiVersion"] = "admission.k8s.io/v1"
    template = copy.deepcopy(deployment["spec"]["template"])
    rs_name = f"{deployment['metadata']['name']}-{rs_hash}"
    metadata: Json = {
        "generateName": f"{rs_name}-",
        "creationTimestamp": None,
        "labels": {**template["metadata"]["labels"], "pod-template-hash": rs_hash},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": rs_name,
                "uid": f"rs-{rs_hash}-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if annotations is not None:
        metadata["annotations"] = dict(annotations)
    review["request"]["uid"] = uid or str(uuid.uuid4())
    review["request"]["namespace"] = namespace
    review["request"]["object"] = {"metadata": metadata, "spec": template["spec"], "status": {}}
    return review


@dataclass
class Pod:
    """A pod as the API server stored it."""

    manifest: Json

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.manifest["metadata"]["namespace"])

    @property
    def uid(self) -> str:
        return str(self.manifest["metadata"]["uid"])

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.manifest["metadata"].get("annotations") or {})

    @property
    def address(self) -> str:
        """``status.podIP``: where the pod's containers connect from."""
        return str(self.manifest["status"]["podIP"])


class KubeletError(RuntimeError):
    """The kubelet cannot build the container's environment (a missing Secret key)."""


def container_env(
    pod: Pod,
    *,
    container: str = AGENT_CONTAINER,
    secret_values: dict[tuple[str, str], str] | None = None,
) -> dict[str, str]:
    """The environment the kubelet gives ``container`` of ``pod`` (module docstring).

    Args:
        pod: the stored pod.
        container: the container's name.
        secret_values: ``(secret name, key) -> value`` of the pod's namespace.

    Raises:
        KubeletError: a ``secretKeyRef`` names a key that is not given (the container would
            not start: ``CreateContainerConfigError``).
    """
    spec = next(c for c in pod.manifest["spec"]["containers"] if c["name"] == container)
    meta = pod.manifest["metadata"]
    env: dict[str, str] = {}
    for var in spec.get("env", []):
        name = var["name"]
        if "value" in var:
            value = str(var["value"])
            for known, resolved in env.items():
                value = value.replace(f"$({known})", resolved)
            env[name] = value
            continue
        source = var.get("valueFrom", {})
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
                env[name] = str(meta[path.split(".", 1)[1]])
            elif path.startswith("metadata.annotations['"):
                key = path[len("metadata.annotations['") : -2]
                env[name] = str((meta.get("annotations") or {}).get(key, ""))
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            found = (secret_values or {}).get((ref["name"], ref["key"]))
            if found is None:
                raise KubeletError(f"secret {ref['name']}/{ref['key']} not found")
            env[name] = found
    return env


class Cluster:
    """The API server and kubelet for the demo, the tests and the benchmark.

    Args:
        kube: the Kubernetes API stand-in the approver reads pods from (pods are stored there).
        webhook_url: the webhook's base URL; None: the webhook is down (pods stored unstamped).
        client_ssl: TLS trust for the webhook.
    """

    def __init__(self, *, kube: KubeApi, webhook_url: str | None, client_ssl: Any) -> None:
        self.kube = kube
        self.webhook_url = webhook_url
        self._ssl = client_ssl
        self._addresses = 0

    def _next_address(self) -> str:
        """A pod address of its own on loopback: 127.0.x.y (y in 2..251), as a CNI would give
        each pod one; its agent connects from it."""
        n = self._addresses
        self._addresses += 1
        return f"127.0.{n // 250 % 256}.{n % 250 + 2}"

    async def create_pod(
        self,
        session: aiohttp.ClientSession,
        deployment: Json,
        *,
        namespace: str,
        rs_hash: str | None = None,
        annotations: dict[str, str] | None = None,
    ) -> tuple[Json | None, Pod]:
        """Admit and store one pod of ``deployment``; returns the webhook's ``response`` (None
        when the webhook is down) and the stored pod."""
        review = pod_review(
            deployment,
            namespace=namespace,
            rs_hash=rs_hash or secrets.token_hex(5)[:9],
            annotations=annotations,
        )
        if self.webhook_url is None:
            response = None
            manifest: Json = copy.deepcopy(review["request"]["object"])
            meta = manifest["metadata"]
            meta["name"] = generated_name(meta["generateName"])
            meta["namespace"] = namespace
        else:
            response, manifest = await admit(
                session, self.webhook_url, review, client_ssl=self._ssl
            )
        manifest["metadata"]["uid"] = str(uuid.uuid4())
        address = self._next_address()
        manifest["status"] = {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}]}
        manifest.setdefault("apiVersion", "v1")
        manifest.setdefault("kind", "Pod")
        stored = self.kube.add_pod(manifest)
        return response, Pod(stored)

    def delete_pod(self, pod: Pod) -> None:
        """Delete the pod (the watch sees ``DELETED``)."""
        self.kube.delete_pod(pod.namespace, pod.name)
