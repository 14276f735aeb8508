"""The kustomize base installs what the Helm chart installs, and stays generated from it.

manifests/kustomize/base is written by its generate.py from the chart (with
base/chart-values.yaml); the property tests run on that value set as ``kustomize-base``. Here:
the files on disk are what the generator writes now, ``kubectl kustomize`` of the base yields
exactly the chart's objects, and the example overlay turns auto-approval on in a way the
approver's own loader accepts.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.manifests import chart
from tests.manifests.conftest import Case
from tests.manifests.test_config import _load

BASE = chart.KUSTOMIZE_DIR / "base"
needs_kubectl = pytest.mark.skipif(
    chart.kubectl() is None, reason="kubectl is not installed: cannot run kubectl kustomize"
)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kustomize_generate", BASE / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _key(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def _canonical(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], str]:
    out = {_key(o): json.dumps(o, sort_keys=True) for o in objects}
    assert len(out) == len(objects), "duplicate objects"
    return out


def test_base_is_generated_from_the_chart() -> None:
    """Every file of the base is exactly what generate.py writes from the current chart. When
    this fails: `.venv/bin/python manifests/kustomize/base/generate.py`."""
    files = _generator().build()
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"chart-values.yaml"}
    assert on_disk == set(files)
    stale = [name for name, text in files.items() if (BASE / name).read_text() != text]
    assert not stale, f"stale: {stale}; run .venv/bin/python manifests/kustomize/base/generate.py"


@needs_kubectl
def test_kustomize_installs_what_helm_installs(cases: dict[str, Case]) -> None:
    """`kubectl kustomize manifests/kustomize` = the chart's render with chart-values.yaml,
    minus only the Helm-release labels and the hooks but the post-install cluster-bootstrap
    ones, made plain."""
    helm_objects = _generator().installed(json.loads(json.dumps(cases["kustomize-base"].objects)))
    assert _canonical(chart.kustomize_build()) == _canonical(helm_objects)


def test_base_runs_cluster_bootstrap_as_a_plain_job() -> None:
    """kubectl has no hooks: the base carries one ordinary Job that creates what is absent and
    patches the caBundle, with its ServiceAccount and RBAC, no Helm hook annotation anywhere, and
    a TTL so that a later `kubectl apply -k` runs it again. No test Pod, no pre-install Job."""
    import yaml

    objects = [
        d
        for path in sorted(BASE.glob("*.yaml"))
        if path.name not in ("chart-values.yaml", "kustomization.yaml")
        for d in yaml.safe_load_all(path.read_text())
        if d
    ]
    assert not [o for o in objects if chart.is_hook(o)]
    (job,) = chart.of_kind(objects, "Job")
    assert job["metadata"]["name"] == "agent-bootstrap-cluster-bootstrap-patch"
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/opt/venv/bin/certs-tooling"]
    assert container["args"][0] == "cluster-bootstrap"
    assert "--webhook-configuration=agent-bootstrap" in container["args"]
    bootstrap = {
        (o["kind"], o["metadata"]["name"])
        for o in objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "cluster-bootstrap"
    }
    assert bootstrap == {
        (kind, "agent-bootstrap-cluster-bootstrap")
        for kind in ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
    } | {("Job", "agent-bootstrap-cluster-bootstrap-patch")}
    assert not chart.of_kind(objects, "Pod")


@needs_kubectl
def test_auto_approve_overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example overlay turns auto-approval on (env over the config file), and the approver's
    loader accepts the result; the JWKS volume becomes required."""
    objects = chart.kustomize_build(chart.KUSTOMIZE_DIR / "overlays" / "auto-approve")
    case = Case(name="overlay", values={}, effective={}, objects=objects)
    settings, _, files = _load(case, "approver", tmp_path, monkeypatch)
    assert settings.auto_approve.enabled is True
    assert settings.token.jwks_file is not None
    assert files.volumes["jwks"]["configMap"]["optional"] is False
    assert settings.trust.namespaces == frozenset({"streamspace"})
