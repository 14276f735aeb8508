"""The agent proxy, injected on opt-in: JSON Patch operations that add the proxy sidecar to a
stamped agent pod and point the agent at it (docs/agent-certificates.md, "The agent proxy").

A pod opts in with the annotation ``agent-bootstrap.io/agent-proxy: "true"`` (on its
Deployment's pod template); only pods the webhook stamps (trusted namespace, agent selector)
are considered. The patch adds:

* ``agent-bootstrap-proxy``, a native sidecar (an init container with ``restartPolicy:
  Always``; Kubernetes "Sidecar Containers", on by default since 1.29) first among the init
  containers, so the kubelet starts it before every other container and waits for its
  ``startupProbe`` (its port answering) before starting the next one: the agent never dials a
  proxy that is not there yet. Non-root, read-only root file system, no capabilities, the
  ``RuntimeDefault`` seccomp profile, small requests;
* two volumes: ``agent-bootstrap-proxy-state`` (an ``emptyDir`` in memory, 1 Mi: the proxy's
  private key and certificate never touch the node's disk) and ``agent-bootstrap-proxy-ca``
  (the ConfigMap holding the CA of the approver's serving certificate, the one the streamspace
  guide already creates in the agents' namespace);
* in each named agent container, ``CONTROL_PLANE_URL`` (the variable is configurable) set to
  ``ws://127.0.0.1:<port>``: the proxy on the pod's loopback, which only the pod's own
  containers reach.

A pod that already has a container or volume of those names is left as it is (the patch is
not applied twice, e.g. on reinvocation). References: RFC 6902 (JSON Patch); every operation
targets a member whose parent exists in the object as sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.errors import MalformedReview
from webhook.patch import PatchOp

#: The pod annotation that opts a pod in; its value must be exactly "true".
OPT_IN_ANNOTATION = "agent-bootstrap.io/agent-proxy"
SIDECAR_NAME = "agent-bootstrap-proxy"
STATE_VOLUME = "agent-bootstrap-proxy-state"
CA_VOLUME = "agent-bootstrap-proxy-ca"
STATE_DIR = "/var/run/agent-bootstrap-proxy"
CA_DIR = "/etc/agent-bootstrap-proxy/ca"
#: The proxy's console script in the image (Dockerfile: /opt/venv/bin is on PATH).
COMMAND = "agent-bootstrap-agent-proxy"


@dataclass(frozen=True, slots=True)
class ProxyInjection:
    """What to inject (webhook setting ``agentProxy``).

    Attributes:
        image: the image holding ``agent-bootstrap-agent-proxy`` (this project's image).
        upstream_url: the approver as the proxy reaches it, ``https://...``.
        containers: the agent containers pointed at the proxy.
        url_variable: their variable naming the control plane (StreamSpace: CONTROL_PLANE_URL).
        ca_config_map: ConfigMap (in the pod's namespace) with the approver's CA.
        ca_key: its key holding the PEM bundle.
        port: the proxy's port on the pod's loopback.
        image_pull_policy: the sidecar's ``imagePullPolicy``.
    """

    image: str
    upstream_url: str
    containers: frozenset[str]
    url_variable: str = "CONTROL_PLANE_URL"
    ca_config_map: str = "agent-bootstrap-ca"
    ca_key: str = "ca.crt"
    port: int = 8480
    image_pull_policy: str = "IfNotPresent"

    @property
    def agent_url(self) -> str:
        """Where the agent finds the proxy."""
        return f"ws://127.0.0.1:{self.port}"


def wants_proxy(obj: Mapping[str, Any]) -> bool:
    """True when the pod carries the opt-in annotation with the value ``"true"``."""
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return isinstance(annotations, dict) and annotations.get(OPT_IN_ANNOTATION) == "true"


def sidecar(injection: ProxyInjection) -> dict[str, Any]:
    """The sidecar container (module docstring)."""
    env = {
        "AGENT_BOOTSTRAP_PROXY_UPSTREAM_URL": injection.upstream_url,
        "AGENT_BOOTSTRAP_PROXY_CA_FILE": f"{CA_DIR}/{injection.ca_key}",
        "AGENT_BOOTSTRAP_PROXY_LISTEN_HOST": "127.0.0.1",
        "AGENT_BOOTSTRAP_PROXY_LISTEN_PORT": str(injection.port),
        "AGENT_BOOTSTRAP_PROXY_STATE_DIR": STATE_DIR,
    }
    return {
        "name": SIDECAR_NAME,
        "image": injection.image,
        "imagePullPolicy": injection.image_pull_policy,
        "restartPolicy": "Always",
        "command": [COMMAND],
        "env": [{"name": name, "value": value} for name, value in env.items()],
        "startupProbe": {
            "tcpSocket": {"host": "127.0.0.1", "port": injection.port},
            "periodSeconds": 1,
            "failureThreshold": 30,
        },
        "resources": {
            "requests": {"cpu": "10m", "memory": "48Mi"},
            "limits": {"memory": "128Mi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": STATE_VOLUME, "mountPath": STATE_DIR},
            {"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True},
        ],
    }


def volumes(injection: ProxyInjection) -> list[dict[str, Any]]:
    """The two volumes (module docstring)."""
    return [
        {"name": STATE_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {
            "name": CA_VOLUME,
            "configMap": {
                "name": injection.ca_config_map,
                "items": [{"key": injection.ca_key, "path": injection.ca_key}],
            },
        },
    ]


def _named(items: Any, where: str) -> set[str]:
    if items is None:
        return set()
    if not isinstance(items, list):
        raise MalformedReview("malformed_pod", f"request.object is not a Pod: invalid {where}")
    return {
        str(item["name"])
        for item in items
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    }


def url_entry(injection: ProxyInjection) -> dict[str, Any]:
    """The ``EnvVar`` pointing the agent at the proxy (``webhook.inject.set_envs`` sets it, with
    the token of ``injectEnv``, before :func:`inject_proxy`'s operations apply)."""
    return {"name": injection.url_variable, "value": injection.agent_url}


def inject_proxy(obj: Mapping[str, Any], injection: ProxyInjection) -> list[PatchOp]:
    """Operations that add the sidecar and its volumes to ``obj`` (module docstring); empty
    when the pod does not opt in or already has it. The agent's URL is not among them
    (:func:`url_entry`): the caller sets it with every other env change, in operations that
    come before these (the sidecar is inserted at ``/spec/initContainers/0``, which moves the
    index of every init container after it).

    Raises:
        MalformedReview: reason ``malformed_pod`` when ``spec`` or one of its lists has the
            wrong JSON type.
    """
    if not wants_proxy(obj):
        return []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise MalformedReview("malformed_pod", "request.object is not a Pod: invalid spec")
    names = _named(spec.get("initContainers"), "spec.initContainers") | _named(
        spec.get("containers"), "spec.containers"
    )
    if SIDECAR_NAME in names or {STATE_VOLUME, CA_VOLUME} & _named(
        spec.get("volumes"), "spec.volumes"
    ):
        return []
    ops: list[PatchOp] = []
    container = sidecar(injection)
    if spec.get("initContainers") is None:
        ops.append({"op": "add", "path": "/spec/initContainers", "value": [container]})
    else:
        ops.append({"op": "add", "path": "/spec/initContainers/0", "value": container})
    if spec.get("volumes") is None:
        ops.append({"op": "add", "path": "/spec/volumes", "value": volumes(injection)})
    else:
        ops.extend({"op": "add", "path": "/spec/volumes/-", "value": v} for v in volumes(injection))
    return ops
