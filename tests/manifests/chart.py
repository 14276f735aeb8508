"""Rendering the Helm chart and the kustomize base offline, and reading what they render.

The chart is rendered by Helm's own engine through ``helm-python-sdk`` (``helm_python``: Helm v4
compiled into a shared library, called with ctypes; no ``helm`` binary, no cluster, no network).
Its render applies ``values.schema.json`` and the chart's ``fail`` checks exactly as ``helm
template`` would. The kustomize base is built with ``kubectl kustomize``.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "manifests" / "helm" / "agent-bootstrap"
KUSTOMIZE_DIR = REPO / "manifests" / "kustomize"
STREAMSPACE_AGENT = REPO / "tests" / "fixtures" / "streamspace" / "k8s-agent-deployment.yaml"

RELEASE = "agent-bootstrap"
NAMESPACE = "agent-bootstrap"

# Kinds of custom resources: no schema in kubernetes-validate (it knows the built-in API only),
# so their shape is asserted by the tests instead.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
}

Obj = dict[str, Any]


def render(
    values: Mapping[str, Any] | None = None,
    *,
    namespace: str = NAMESPACE,
    chart_dir: Path = CHART_DIR,
    release: str = RELEASE,
) -> list[Obj]:
    """Every object the chart renders with ``values`` (NOTES.txt and empty documents left out;
    Helm hooks such as the ``helm test`` Pod included, see :func:`is_hook`).

    Raises:
        helm_python.HelmValuesError: the values break values.schema.json.
        helm_python.HelmRenderError: a template failed (the chart's own ``fail`` checks).
    """
    import helm_python as helm

    with helm.Chart.load(str(chart_dir)) as chart:
        manifests = chart.render(
            dict(values or {}), name=release, namespace=namespace, is_install=True
        )
    objects: list[Obj] = []
    for path in sorted(manifests):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(manifests[path]) if doc)
    return objects


def render_templates(values: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The chart's rendered manifests by template path (for writing the kustomize base)."""
    import helm_python as helm

    with helm.Chart.load(str(CHART_DIR)) as chart:
        return chart.render(dict(values or {}), name=RELEASE, namespace=NAMESPACE, is_install=True)


def kubectl() -> str | None:
    """Path of ``kubectl``, or None when it is not installed."""
    return shutil.which("kubectl")


def kustomize_build(directory: Path = KUSTOMIZE_DIR) -> list[Obj]:
    """``kubectl kustomize DIR``, parsed. Needs kubectl (see :func:`kubectl`)."""
    exe = kubectl()
    assert exe is not None, "kubectl is not installed"
    out = subprocess.run(
        [exe, "kustomize", str(directory)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


# --- looking things up ------------------------------------------------------------------------


def of_kind(objects: Iterable[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: Iterable[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def maybe(objects: Iterable[Obj], kind: str) -> Obj | None:
    found = of_kind(objects, kind)
    assert len(found) <= 1, f"more than one {kind}"
    return found[0] if found else None


def is_hook(obj: Obj) -> bool:
    """A Helm hook (``helm.sh/hook`` annotation): run by Helm around an install or on demand
    (the cluster-bootstrap Jobs and their RBAC, the ``helm test`` Pod), not one of the
    installed objects."""
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})


def hooks(objects: Iterable[Obj]) -> list[Obj]:
    """The ``helm test`` hooks (``helm.sh/hook: test``): the test Pod."""
    return [o for o in objects if (o["metadata"].get("annotations") or {}).get(HOOK) == "test"]


HOOK = "helm.sh/hook"
#: app.kubernetes.io/component of the cluster-bootstrap hooks (templates/clusterbootstrap.yaml).
BOOTSTRAP = "cluster-bootstrap"


def is_bootstrap(obj: Obj) -> bool:
    """One of the cluster-bootstrap hooks: its Jobs, ServiceAccount and RBAC."""
    labels = obj["metadata"].get("labels") or {}
    return is_hook(obj) and labels.get("app.kubernetes.io/component") == BOOTSTRAP


def without_bootstrap(objects: Iterable[Obj]) -> list[Obj]:
    """The objects but the cluster-bootstrap hooks (the services' own objects and RBAC; the
    hooks are asserted in test_cluster_bootstrap.py)."""
    return [o for o in objects if not is_bootstrap(o)]


def pod_specs(objects: Iterable[Obj]) -> Iterator[tuple[str, Obj]]:
    """(workload name, pod spec) of every object that runs pods."""
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            yield o["metadata"]["name"], o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            yield o["metadata"]["name"], o["spec"]


def containers(pod_spec: Obj) -> list[Obj]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics, through the project's own implementation."""
    from bootstrap_token.policy import LabelSelector

    return LabelSelector.model_validate(selector or {}).matches(labels)


def namespace_labels(name: str) -> dict[str, str]:
    """The labels the API server puts on every namespace (and nobody can change)."""
    return {"kubernetes.io/metadata.name": name}


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def streamspace_agent_pod_labels() -> dict[str, str]:
    """Pod template labels of StreamSpace's real k8s-agent Deployment (the pod we must stamp)."""
    deployment = yaml.safe_load(STREAMSPACE_AGENT.read_text())
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of two values trees (override wins), as Helm coalesces values files."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
