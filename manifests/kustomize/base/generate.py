"""Write the kustomize base from the Helm chart, so both install the same objects.

Usage (from the repository root, with the test dependencies installed)::

    .venv/bin/python manifests/kustomize/base/generate.py          # rewrite the base
    .venv/bin/python manifests/kustomize/base/generate.py --check  # exit 1 if it is out of date

The chart is rendered offline by Helm's own engine (helm-python-sdk) with ``chart-values.yaml``,
release ``agent-bootstrap`` in namespace ``agent-bootstrap``. Each chart template becomes one
file here, minus the labels that only make sense for a Helm release (``helm.sh/chart``,
``app.kubernetes.io/managed-by``) and minus Helm hooks (the ``helm test`` Pod).
tests/manifests/test_kustomize.py fails when the files are stale, and checks that ``kubectl
kustomize`` of this folder equals the chart's render.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parents[1] / "helm" / "agent-bootstrap"
RELEASE = NAMESPACE = "agent-bootstrap"
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
HEADER = (
    "# Generated from the Helm chart (manifests/helm/agent-bootstrap) with chart-values.yaml\n"
    "# by manifests/kustomize/base/generate.py. Do not edit: change the chart or\n"
    "# chart-values.yaml and run `.venv/bin/python manifests/kustomize/base/generate.py`.\n"
)


def strip_helm_labels(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without the Helm-release labels, wherever labels appear (object, pod template)."""
    for meta in (obj.get("metadata"), obj.get("spec", {}).get("template", {}).get("metadata")):
        if isinstance(meta, dict) and isinstance(meta.get("labels"), dict):
            for key in HELM_ONLY_LABELS:
                meta["labels"].pop(key, None)
    return obj


def is_helm_hook(obj: dict[str, Any]) -> bool:
    """A Helm hook (``helm.sh/hook`` annotation, e.g. the ``helm test`` Pod): Helm runs it on
    demand, it is no part of the installed objects, so the base leaves it out."""
    annotations = obj.get("metadata", {}).get("annotations") or {}
    return "helm.sh/hook" in annotations


def render_objects() -> dict[str, list[dict[str, Any]]]:
    """The chart's objects by output file name (template name), Helm labels stripped."""
    import helm_python as helm

    values = yaml.safe_load((HERE / "chart-values.yaml").read_text())
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    files: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(manifests):
        if not path.endswith(".yaml"):
            continue
        objects = [
            strip_helm_labels(d)
            for d in yaml.safe_load_all(manifests[path])
            if d and not is_helm_hook(d)
        ]
        if objects:
            files[Path(path).name] = objects
    return files


def build() -> dict[str, str]:
    """File name -> text of every file of the base, kustomization.yaml included."""
    out = {
        name: HEADER + "---\n".join(yaml.safe_dump(o, sort_keys=False, width=100) for o in objects)
        for name, objects in render_objects().items()
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(out),
    }
    out["kustomization.yaml"] = HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    return out


def main(argv: list[str]) -> int:
    files = build()
    stale = sorted(
        name
        for name, text in files.items()
        if not (HERE / name).is_file() or (HERE / name).read_text() != text
    )
    generated = {p.name for p in HERE.glob("*.yaml")} - {"chart-values.yaml"}
    extra = sorted(generated - set(files))
    if "--check" in argv:
        for name in [*stale, *extra]:
            print(f"out of date: manifests/kustomize/base/{name}", file=sys.stderr)
        return 1 if stale or extra else 0
    for name in extra:
        (HERE / name).unlink()
    for name in stale:
        (HERE / name).write_text(files[name])
    print(f"wrote {len(stale)} file(s), removed {len(extra)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
