"""Every rendered object is valid against the real Kubernetes OpenAPI schemas, 1.30 to 1.35.

``kubernetes-validate --strict`` ships the JSON schemas of each Kubernetes release; strict mode
refuses properties the API does not have (a misspelt field is an error, not silently dropped by
the API server). ValidatingAdmissionPolicy is GA (admissionregistration.k8s.io/v1) from 1.30, the
chart's lowest supported version.

Custom resources (ServiceMonitor, cert-manager's Certificate and Issuer) have no schema there:
they are skipped here by name (``chart.CUSTOM_KINDS``) and their shape is asserted in
test_objects.py. Any other kind without a schema fails.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from tests.manifests import chart
from tests.manifests.conftest import Case

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate",
    reason="kubernetes-validate is not installed (pip install -e '.[test]')",
)
from kubernetes_validate import utils as kv_utils  # noqa: E402

K8S_VERSIONS = ["1.30", "1.31", "1.32", "1.33", "1.34", "1.35"]


@pytest.fixture(scope="module", autouse=True)
def _cached_schemas() -> Any:
    """Load each schema file once: validate() re-reads the large definitions file per object."""
    original = kv_utils.schema_contents
    kv_utils.schema_contents = functools.lru_cache(maxsize=None)(original)
    yield
    kv_utils.schema_contents = original


def _validate_all(objects: list[dict[str, Any]], version: str) -> list[str]:
    errors = []
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in chart.CUSTOM_KINDS:
            continue
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            used = kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{where}: {path}: {exc.message}")
            continue
        except kv_utils.SchemaNotFoundError as exc:
            errors.append(f"{where}: {exc.message}")
            continue
        # The package falls back to an older schema set when it lacks the one asked for.
        assert used == version, f"validated {where} against {used}, not {version}"
    return errors


def _unique(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for obj in objects:
        seen.setdefault(json.dumps(obj, sort_keys=True), obj)
    return list(seen.values())


def test_schemas_for_every_supported_version_are_installed() -> None:
    """The installed kubernetes-validate has schemas for 1.30 through 1.35 (no silent fallback)."""
    available = {kv_utils.major_minor(v) for v in kv_utils.all_versions()}
    assert set(K8S_VERSIONS) <= available


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_chart_objects_are_valid(version: str, cases: dict[str, Case]) -> None:
    """Every object of every value set passes strict validation for this Kubernetes version."""
    objects = _unique([o for case in cases.values() for o in case.objects])
    errors = _validate_all(objects, version)
    assert not errors, "\n".join(errors)


@pytest.mark.skipif(chart.kubectl() is None, reason="kubectl is not installed: no kustomize")
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kustomize_objects_are_valid(version: str) -> None:
    """Every object of the kustomize base passes strict validation for this Kubernetes version."""
    errors = _validate_all(chart.kustomize_build(), version)
    assert not errors, "\n".join(errors)


def test_custom_kinds_skipped_are_only_the_known_ones(cases: dict[str, Case]) -> None:
    """Nothing but the three known custom resources escapes schema validation."""
    rendered = {(o["apiVersion"], o["kind"]) for case in cases.values() for o in case.objects}
    custom = {(a, k) for a, k in rendered if "." in a.split("/")[0] and not a.endswith("k8s.io/v1")}
    assert custom <= chart.CUSTOM_KINDS


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_helm_lint_strict(version: str) -> None:
    """`helm lint --strict` (Helm's own linter, offline) finds no warning or error."""
    import helm_python as helm

    report = helm.lint(
        str(chart.CHART_DIR), strict=True, kube_version=f"v{version}.0", namespace=chart.NAMESPACE
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"]
    assert not problems, problems
