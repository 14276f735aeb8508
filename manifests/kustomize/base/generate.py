"""Write the kustomize base from the Helm chart, so both install the same objects.

Usage (from the repository root, with the test dependencies installed)::

    .venv/bin/python manifests/kustomize/base/generate.py          # rewrite the base
    .venv/bin/python manifests/kustomize/base/generate.py --check  # exit 1 if it is out of date

The chart is rendered offline by Helm's own engine (helm-python-sdk) with ``chart-values.yaml``,
release ``agent-bootstrap`` in namespace ``agent-bootstrap``. Each chart template becomes one
file here, minus the labels that only make sense for a Helm release (``helm.sh/chart``,
``app.kubernetes.io/managed-by``) and minus Helm hooks (the ``helm test`` Pod), except the
cluster-bootstrap hooks that run after the install (:func:`plain_bootstrap`): kubectl has no hooks,
so the base carries them as ordinary objects and ``kubectl apply -k`` comes up by itself.
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


#: The chart's cluster-bootstrap hooks (app.kubernetes.io/component).
BOOTSTRAP = "cluster-bootstrap"
HOOK_ANNOTATIONS = ("helm.sh/hook", "helm.sh/hook-weight", "helm.sh/hook-delete-policy")
#: A finished Job is removed after this long, so a later `kubectl apply -k` (a new image: a Job's
#: pod template is immutable) creates and runs it again instead of failing.
JOB_TTL_SECONDS = 600


def plain_bootstrap(obj: dict[str, Any]) -> dict[str, Any] | None:
    """A cluster-bootstrap hook as an ordinary object, or None when the base leaves it out.

    Kept: the hooks of ``post-install`` (the ServiceAccount, the RBAC and the Job that creates
    what is absent and then patches the caBundle: in one ``kubectl apply`` the pods wait in
    ContainerCreating for their Secrets, and the MutatingWebhookConfiguration is applied with
    them). Left out: the pre-install-only Job (the same run without the patch) and every other
    hook. The Helm hook annotations are removed; the Job gets ``ttlSecondsAfterFinished``.
    """
    meta = obj.get("metadata", {})
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    if labels.get("app.kubernetes.io/component") != BOOTSTRAP:
        return None
    if "post-install" not in annotations.get("helm.sh/hook", "").split(","):
        return None
    for key in HOOK_ANNOTATIONS:
        annotations.pop(key, None)
    if not annotations:
        meta.pop("annotations", None)
    if obj.get("kind") == "Job":
        obj["spec"] = {"ttlSecondsAfterFinished": JOB_TTL_SECONDS, **obj["spec"]}
    return obj


def installed(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the base installs of a rendered template: the objects that are no hooks, and the
    cluster-bootstrap hooks made plain (:func:`plain_bootstrap`); Helm labels stripped."""
    out = []
    for d in docs:
        if not d:
            continue
        if is_helm_hook(d):
            plain = plain_bootstrap(d)
            if plain is None:
                continue
            d = plain
        out.append(strip_helm_labels(d))
    return out


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
        objects = installed(list(yaml.safe_load_all(manifests[path])))
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
