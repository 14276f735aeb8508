"""The rendered config files load with the services' own loaders, as the pods would load them.

For each value set, the webhook's and the approver's ConfigMap file is read by
``webhook.config.load_settings`` / ``approver.config.load_settings`` (unknown keys are errors
there), with the container's ``AGENT_BOOTSTRAP_*`` environment applied, after checking that
every file the config names is provided by a volume the container mounts. The loaded settings
must then say what the values said: a chart value and a service setting cannot drift apart.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from approver.config import ApproverSettings
from approver.config import load_settings as load_approver_settings
from tests.manifests import chart
from tests.manifests.conftest import Case
from webhook.config import WebhookSettings
from webhook.config import load_settings as load_webhook_settings

#: Approver settings the chart already has values for but approver/config.py does not read yet.
#: Their lines wait in the PENDING comment of templates/_config.tpl. When the approver gains one,
#: test_pending_keys_are_still_pending fails: move the line above the comment, drop it here.
PENDING_APPROVER_KEYS: set[str] = set()
#: Likewise for the webhook (none at the moment).
PENDING_WEBHOOK_KEYS: set[str] = set()

#: Stand-in for the PostgreSQL URL the pod reads from its Secret.
SECRET_DSN = "postgresql+asyncpg://approver:secret@postgres.db.svc:5432/agent_bootstrap"

MOUNT_ROOTS = ("/etc/agent-bootstrap/", "/var/lib/agent-bootstrap/")

#: Where the webhook pods mount webhook.apiServerClientCA's Secret.
CLIENT_CA_DIR = "/etc/agent-bootstrap/client-ca"

#: Where the approver pods mount controlPlane.streamspace's Secrets and CA ConfigMap.
STREAMSPACE_KEY_DIR = "/etc/agent-bootstrap/streamspace"
STREAMSPACE_ADMIN_DIR = "/etc/agent-bootstrap/streamspace-admin"
STREAMSPACE_CA_DIR = "/etc/agent-bootstrap/streamspace-ca"
STREAMSPACE_VOLUMES = {"streamspace", "streamspace-admin", "streamspace-ca"}


def _file_keys(model: type[Any]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


class PodFiles:
    """The files a container would see, judged from its volumeMounts and the volumes."""

    def __init__(self, objects: list[dict[str, Any]], deployment: str, container: str) -> None:
        dep = chart.named(objects, "Deployment", deployment)
        spec = dep["spec"]["template"]["spec"]
        self.objects = objects
        self.container = next(c for c in spec["containers"] if c["name"] == container)
        self.volumes = {v["name"]: v for v in spec.get("volumes", [])}
        self.mounts = {m["mountPath"].rstrip("/"): m for m in self.container["volumeMounts"]}

    def volume_for(self, path: str) -> tuple[dict[str, Any], str]:
        """(volume, file name inside it) for an absolute path the config names."""
        directory, name = posixpath.split(path)
        assert directory in self.mounts, f"{path}: no volume is mounted at {directory}"
        mount = self.mounts[directory]
        assert "subPath" not in mount, f"{path}: subPath mounts are never updated on rotation"
        return self.volumes[mount["name"]], name

    def assert_provides(self, path: str) -> None:
        """The volume mounted over ``path``'s directory provides a file of that name."""
        volume, name = self.volume_for(path)
        source = volume.get("secret") or volume.get("configMap")
        if source is None:
            return  # a PVC or emptyDir: the service writes there itself
        items = source.get("items")
        if items is not None:
            assert name in {i["path"] for i in items}, f"{path}: volume {volume['name']} lacks it"

    def config_text(self) -> tuple[str, str]:
        """(config path from --config, its text from the mounted ConfigMap)."""
        args = self.container["args"]
        path = args[args.index("--config") + 1]
        volume, name = self.volume_for(path)
        configmap = chart.named(self.objects, "ConfigMap", volume["configMap"]["name"])
        return path, configmap["data"][name]

    def environment(self) -> dict[str, str]:
        """The container's AGENT_BOOTSTRAP_* variables (Secret references filled in)."""
        env = {}
        for var in self.container.get("env", []):
            if not var["name"].startswith("AGENT_BOOTSTRAP_"):
                continue
            if "value" in var:
                env[var["name"]] = var["value"]
            elif "fieldRef" in var["valueFrom"]:
                # The downward API: the pod's own namespace, the one the chart is rendered in.
                assert var["valueFrom"]["fieldRef"] == {"fieldPath": "metadata.namespace"}
                env[var["name"]] = chart.NAMESPACE
            else:
                ref = var["valueFrom"]["secretKeyRef"]
                assert ref["name"]
                assert ref["key"]
                env[var["name"]] = SECRET_DSN
        return env


def _relocate(value: Any, files: PodFiles, tmp: Path) -> Any:
    """Check every in-pod path, and move it under ``tmp`` (where an empty file is made), since
    the loaders check that files such as the JWKS exist."""
    if isinstance(value, dict):
        return {k: _relocate(v, files, tmp) for k, v in value.items()}
    if isinstance(value, list):
        return [_relocate(v, files, tmp) for v in value]
    if isinstance(value, str) and value.startswith(MOUNT_ROOTS):
        local = tmp / value.lstrip("/")
        if value.rstrip("/") in files.mounts:  # a whole mounted folder (e.g. apiKeys.secretDir)
            local.mkdir(parents=True, exist_ok=True)
            return str(local)
        files.assert_provides(value)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.touch()
        return str(local)
    return value


def _load(
    case: Case, component: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, dict[str, Any], PodFiles]:
    files = PodFiles(case.objects, f"agent-bootstrap-{component}", component)
    _, text = files.config_text()
    raw = yaml.safe_load(text)
    local = tmp_path / f"{component}.yaml"
    local.write_text(yaml.safe_dump(_relocate(raw, files, tmp_path / "pod")))
    for name in list(os.environ):
        if name.startswith("AGENT_BOOTSTRAP_"):
            monkeypatch.delenv(name)
    for name, value in files.environment().items():
        monkeypatch.setenv(name, _relocate(value, files, tmp_path / "pod"))
    loader = load_webhook_settings if component == "webhook" else load_approver_settings
    return loader(config_file=local), raw, files


@pytest.fixture
def webhook(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[WebhookSettings, dict[str, Any], PodFiles]:
    return _load(case, "webhook", tmp_path, monkeypatch)


@pytest.fixture
def approver(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[ApproverSettings, dict[str, Any], PodFiles]:
    return _load(case, "approver", tmp_path, monkeypatch)


def _container_port(files: PodFiles, name: str) -> int:
    # containerPort of a rendered (YAML) container: an integer, typed as Any.
    return cast(
        int, next(p["containerPort"] for p in files.container["ports"] if p["name"] == name)
    )


class TestWebhookConfig:
    def test_loads_and_says_what_the_values_say(
        self, case: Case, webhook: tuple[WebhookSettings, dict[str, Any], PodFiles]
    ) -> None:
        """The webhook's own loader accepts the file, and each setting equals its value."""
        settings, _, _ = webhook
        agents = case.effective["agents"]
        assert settings.trust.namespaces == frozenset(agents["autoApprove"]["namespaces"])
        assert settings.trust.service_accounts == frozenset(agents["serviceAccounts"])
        selector = settings.trust.pod_selector
        assert selector.match_labels == agents["podSelector"]["matchLabels"]
        assert len(selector.match_expressions) == len(agents["podSelector"]["matchExpressions"])
        assert settings.annotation_key == agents["annotationKey"]
        assert settings.token_ttl_seconds == agents["tokenTtlSeconds"]
        assert settings.inject_env.enabled == agents["injectEnv"]["enabled"]
        assert list(settings.inject_env.containers) == agents["injectEnv"]["containers"]
        assert settings.inject_env.variable == agents["injectEnv"]["variable"]
        assert settings.cluster == case.effective["clusterName"]
        assert settings.issuer == case.effective["token"]["issuer"]
        assert settings.audience == case.effective["token"]["audience"]
        assert settings.workers == case.effective["webhook"]["workers"]
        # From the downward API, so that trust.namespaces can never list it (hardening item 14).
        assert settings.release_namespace == chart.NAMESPACE

    def test_ports_and_drain_fit_the_pod(
        self, webhook: tuple[WebhookSettings, dict[str, Any], PodFiles]
    ) -> None:
        """The listener is the container's https port, metrics its metrics port, and the pod's
        grace period outlasts the drain."""
        settings, _, files = webhook
        assert settings.port == _container_port(files, "https")
        assert settings.metrics_port == _container_port(files, "metrics")
        dep = chart.named(files.objects, "Deployment", "agent-bootstrap-webhook")
        grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > settings.shutdown_delay_seconds + settings.shutdown_grace_seconds

    def test_reads_key_and_certificate_from_mounted_secrets(
        self, case: Case, webhook: tuple[WebhookSettings, dict[str, Any], PodFiles]
    ) -> None:
        """signingKeyFile and the TLS pair come from the Secrets the values name."""
        _, raw, files = webhook
        tls, _ = files.volume_for(raw["tlsCertFile"])
        assert tls["secret"]["secretName"] == case.effective["tls"]["webhookSecretName"]
        signing, name = files.volume_for(raw["signingKeyFile"])
        assert name == "signing.key"
        expected = case.effective["keys"]["signingKeySecretName"] or (
            "agent-bootstrap-signing-key"
            if case.effective["certManager"]["enabled"]
            else case.effective["tls"]["webhookSecretName"]
        )
        assert signing["secret"]["secretName"] == expected

    def test_api_server_client_ca_from_the_named_secret(
        self, case: Case, webhook: tuple[WebhookSettings, dict[str, Any], PodFiles]
    ) -> None:
        """tlsClientCaFile is set exactly when webhook.apiServerClientCA names a Secret; it is
        then the named key of that Secret, mounted read-only as a directory (no subPath, so a
        new bundle reaches the pod)."""
        settings, raw, files = webhook
        client_ca = case.effective["webhook"]["apiServerClientCA"]
        if not client_ca["existingSecret"]:
            assert "tlsClientCaFile" not in raw
            assert settings.tls_client_ca_file is None
            assert "client-ca" not in files.volumes
            assert CLIENT_CA_DIR not in files.mounts
            return
        assert posixpath.dirname(raw["tlsClientCaFile"]) == CLIENT_CA_DIR
        volume, name = files.volume_for(raw["tlsClientCaFile"])
        assert name == client_ca["key"]
        assert volume["secret"]["secretName"] == client_ca["existingSecret"]
        assert volume["secret"]["items"] == [{"key": client_ca["key"], "path": client_ca["key"]}]
        assert files.mounts[CLIENT_CA_DIR]["readOnly"] is True
        assert settings.tls_client_ca_file is not None
        assert settings.tls_client_ca_file.name == client_ca["key"]


class TestApproverConfig:
    def test_loads_and_says_what_the_values_say(
        self,
        case: Case,
        approver: tuple[ApproverSettings, dict[str, Any], PodFiles],
        webhook: tuple[WebhookSettings, dict[str, Any], PodFiles],
    ) -> None:
        """The approver's own loader accepts the file; its policy and token checks are the
        webhook's."""
        settings, _, _ = approver
        webhook_settings, _, _ = webhook
        assert settings.auto_approve.enabled == case.effective["agents"]["autoApprove"]["enabled"]
        assert settings.trust == webhook_settings.trust
        assert settings.release_namespace == webhook_settings.release_namespace == chart.NAMESPACE
        assert settings.token.issuer == webhook_settings.issuer
        assert settings.token.audience == webhook_settings.audience
        assert settings.token.leeway_seconds == case.effective["token"]["leewaySeconds"]
        # The webhook's own cluster, and the others' whose keys the JWKS may hold (item 12).
        assert settings.token.clusters == {
            webhook_settings.cluster,
            *case.effective["token"].get("extraClusters", []),
        }
        assert settings.agent_id_prefix == (case.effective["agents"]["agentIdPrefix"] or None)
        assert settings.retry_after_seconds == case.effective["approver"]["retryAfterSeconds"]
        assert settings.pending_ttl_seconds == case.effective["approver"]["pendingTtlSeconds"]
        auto = case.effective["agents"]["autoApprove"]
        assert settings.auto_approve.max_active_per_namespace == auto["maxActivePerNamespace"]
        assert settings.auto_approve.max_active_per_owner == auto["maxActivePerOwner"]
        assert settings.kubernetes.token_annotation == webhook_settings.annotation_key
        assert settings.kubernetes.kubeconfig is None  # in-cluster: the mounted token

    def test_pod_access_only_with_rbac_and_a_token(
        self, case: Case, approver: tuple[ApproverSettings, dict[str, Any], PodFiles]
    ) -> None:
        """kubernetes.enabled exactly when the approver has Roles in trusted namespaces and a
        service-account token mounted (otherwise its in-cluster client could not start)."""
        settings, _, _ = approver
        roles = {
            r["metadata"]["namespace"]
            for r in chart.of_kind(chart.without_bootstrap(case.objects), "Role")
        }
        spec = dict(chart.pod_specs(case.objects))["agent-bootstrap-approver"]
        assert settings.kubernetes.enabled == bool(roles)
        assert roles == (set(case.trusted) if settings.kubernetes.enabled else set())
        if settings.kubernetes.enabled:
            assert spec["automountServiceAccountToken"] is True

    def test_jwks_only_and_always_with_auto_approval(
        self, case: Case, approver: tuple[ApproverSettings, dict[str, Any], PodFiles]
    ) -> None:
        """With auto-approval the JWKS ConfigMap is required and read; without, not needed."""
        settings, raw, files = approver
        enabled = case.effective["agents"]["autoApprove"]["enabled"]
        assert (settings.token.jwks_file is not None) == enabled
        jwks = files.volumes["jwks"]["configMap"]
        assert jwks["name"] == case.effective["keys"]["jwksConfigMapName"]
        assert jwks.get("optional", False) is (not enabled)
        if enabled:
            files.assert_provides(raw["token"]["jwksFile"])

    def test_listener_matches_service_and_probes(
        self, case: Case, approver: tuple[ApproverSettings, dict[str, Any], PodFiles]
    ) -> None:
        """Port and TLS agree with the container port, the Service and the probe scheme."""
        settings, _, files = approver
        tls = case.effective["approver"]["tls"]["enabled"]
        assert settings.tls_enabled == tls
        port_name = "https" if tls else "http"
        assert settings.port == _container_port(files, port_name)
        service = chart.named(case.objects, "Service", "agent-bootstrap-approver")
        metrics = case.effective["approver"]["metricsPort"]
        assert [p["targetPort"] for p in service["spec"]["ports"]] == (
            [port_name, "metrics"] if metrics else [port_name]
        )
        assert settings.metrics_port == metrics
        if metrics:
            assert settings.metrics_port == _container_port(files, "metrics")
        for probe in ("readinessProbe", "livenessProbe"):
            assert files.container[probe]["httpGet"]["scheme"] == ("HTTPS" if tls else "HTTP")

    def test_database(
        self, case: Case, approver: tuple[ApproverSettings, dict[str, Any], PodFiles]
    ) -> None:
        """SQLite lives on the mounted volume; a PostgreSQL URL comes only from the Secret."""
        settings, raw, files = approver
        if case.effective["approver"]["database"]["type"] == "sqlite":
            path = settings.database_url.removeprefix("sqlite+aiosqlite:///")
            volume, _ = files.volume_for(path)
            assert "persistentVolumeClaim" in volume
        else:
            assert "databaseUrl" not in raw, "a database URL holds a password: not in a ConfigMap"
            assert settings.database_url == SECRET_DSN

    def test_admin_tokens_file(
        self, case: Case, approver: tuple[ApproverSettings, dict[str, Any], PodFiles]
    ) -> None:
        """The admin tokens file is read from the named Secret, or the admin API stays shut."""
        settings, raw, files = approver
        admin = case.effective["approver"]["adminTokens"]
        assert (settings.admin_tokens_file is not None) == bool(admin["existingSecret"])
        if admin["existingSecret"]:
            volume, _ = files.volume_for(raw["adminTokensFile"])
            assert volume["secret"]["secretName"] == admin["existingSecret"]
        review = case.effective["approver"]["reviewTokens"]
        assert (settings.review_tokens_file is not None) == bool(review["existingSecret"])
        if review["existingSecret"]:
            volume, _ = files.volume_for(raw["reviewTokensFile"])
            assert volume["secret"]["secretName"] == review["existingSecret"]

    def test_control_plane(
        self, case: Case, approver: tuple[ApproverSettings, dict[str, Any], PodFiles]
    ) -> None:
        """controlPlane and its mounted Secrets (check_control_plane)."""
        settings, raw, files = approver
        check_control_plane(case, settings, raw, files)


def check_control_plane(
    case: Case, settings: ApproverSettings, raw: dict[str, Any], files: PodFiles
) -> None:
    """controlPlane says what the values say. With streamspace, every file it names is the named
    key of the named Secret or ConfigMap, that volume lists only the keys needed, and it is
    mounted read-only as a directory (no subPath: a rotated password reaches the pod). With
    none, the section is left out (the approver's default) and nothing is mounted."""
    values = case.effective["controlPlane"]
    control_plane = settings.control_plane
    assert control_plane.type.value == values["type"]
    if values["type"] == "none":
        assert "controlPlane" not in raw
        assert control_plane.streamspace is None
        assert not STREAMSPACE_VOLUMES & set(files.volumes)
        return
    ss = values["streamspace"]
    assert control_plane.streamspace is not None
    assert control_plane.budget_seconds == values["budgetSeconds"]
    assert control_plane.sync_interval_seconds == values["syncIntervalSeconds"]
    assert control_plane.streamspace.url == ss["url"]
    assert control_plane.streamspace.forward_client_address == ss["forwardClientAddress"]
    rendered = raw["controlPlane"]["streamspace"]
    admin_keys = [ss["admin"]["usernameKey"], ss["admin"]["passwordKey"]]
    expected = [
        ("bootstrapKeyFile", STREAMSPACE_KEY_DIR, ss["bootstrapKey"]["existingSecret"],
         ss["bootstrapKey"]["key"], [ss["bootstrapKey"]["key"]]),
        ("adminUsernameFile", STREAMSPACE_ADMIN_DIR, ss["admin"]["existingSecret"],
         ss["admin"]["usernameKey"], admin_keys),
        ("adminPasswordFile", STREAMSPACE_ADMIN_DIR, ss["admin"]["existingSecret"],
         ss["admin"]["passwordKey"], admin_keys),
    ]  # fmt: skip
    for field, directory, secret, key, keys in expected:
        assert posixpath.dirname(rendered[field]) == directory, field
        volume, name = files.volume_for(rendered[field])
        assert name == key, field
        assert volume["secret"]["secretName"] == secret, field
        assert volume["secret"]["items"] == [{"key": k, "path": k} for k in keys], field
        assert files.mounts[directory]["readOnly"] is True, field
    loaded = control_plane.streamspace
    assert loaded.bootstrap_key_file.name == ss["bootstrapKey"]["key"]
    assert loaded.admin_username_file.name == ss["admin"]["usernameKey"]
    assert loaded.admin_password_file.name == ss["admin"]["passwordKey"]
    ca = ss["caBundle"]
    if not ca["existingConfigMap"]:
        assert "caFile" not in rendered
        assert loaded.ca_file is None
        assert set(files.volumes) & STREAMSPACE_VOLUMES == {"streamspace", "streamspace-admin"}
        return
    assert posixpath.dirname(rendered["caFile"]) == STREAMSPACE_CA_DIR
    volume, name = files.volume_for(rendered["caFile"])
    assert name == ca["key"]
    assert volume["configMap"]["name"] == ca["existingConfigMap"]
    assert volume["configMap"]["items"] == [{"key": ca["key"], "path": ca["key"]}]
    assert files.mounts[STREAMSPACE_CA_DIR]["readOnly"] is True
    assert loaded.ca_file is not None
    assert loaded.ca_file.name == ca["key"]


def test_defaults_leave_auto_approval_off(
    cases: dict[str, Case], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no values at all, the approver approves nothing by itself."""
    settings, _, _ = _load(cases["defaults"], "approver", tmp_path, monkeypatch)
    assert settings.auto_approve.enabled is False
    assert settings.trust.namespaces == frozenset()


@pytest.mark.parametrize("name", ["defaults", "kustomize-base"])
def test_defaults_require_no_client_certificate(
    name: str, cases: dict[str, Case], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without webhook.apiServerClientCA (the default, and the kustomize base) the webhook pods
    mount no client CA and accept any TLS client, as before the setting existed."""
    settings, raw, files = _load(cases[name], "webhook", tmp_path, monkeypatch)
    assert cases[name].effective["webhook"]["apiServerClientCA"]["existingSecret"] == ""
    assert settings.tls_client_ca_file is None
    assert "tlsClientCaFile" not in raw
    assert set(files.volumes) == {"config", "tls", "signing", "tmp"}
    assert CLIENT_CA_DIR not in files.mounts


@pytest.mark.parametrize(
    ("model", "pending"),
    [(ApproverSettings, PENDING_APPROVER_KEYS), (WebhookSettings, PENDING_WEBHOOK_KEYS)],
    ids=["approver", "webhook"],
)
def test_pending_keys_are_still_pending(model: type[Any], pending: set[str]) -> None:
    """A key waiting in the template's PENDING comment is not a setting yet. When this fails,
    the service has learnt the key: render it (move its line in templates/_config.tpl above the
    PENDING comment) and remove it from the PENDING set in this file."""
    learnt = pending & _file_keys(model)
    assert not learnt, f"{model.__name__} now reads {sorted(learnt)}: render them"


def test_pending_keys_wait_in_the_template() -> None:
    """Each pending key has its line ready in the template's PENDING comment."""
    template = (chart.CHART_DIR / "templates" / "_config.tpl").read_text()
    pending_block = template.split("PENDING:", 1)[1]
    for key in PENDING_APPROVER_KEYS | PENDING_WEBHOOK_KEYS:
        assert f"\n{key}: " in pending_block, f"{key} has no line in the PENDING comment"


PENDING_PROBE = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: pending-probe}
data:
  apiKeys: {{ include "agent-bootstrap.apiKeysConfig" . | quote }}
  serviceAccountTokens: {{ include "agent-bootstrap.serviceAccountTokensConfig" . | quote }}
"""


@pytest.mark.parametrize("mode", ["tokenreview", "offline"])
def test_pending_sections_fit_the_section_models(
    mode: str, pki: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pending apiKeys and serviceAccountTokens lines already validate against the section
    models the approver will mount, so moving them out of the comment is all that is left."""
    import json
    import shutil

    api_keys = pytest.importorskip("approver.api_keys", reason="approver.api_keys not landed yet")
    service_accounts = pytest.importorskip(
        "approver.service_accounts.settings", reason="approver.service_accounts not landed yet"
    )
    probe_chart = tmp_path / "chart"
    shutil.copytree(chart.CHART_DIR, probe_chart)
    (probe_chart / "templates" / "zz-pending-probe.yaml").write_text(PENDING_PROBE)
    from tests.manifests.conftest import build_value_sets

    values = chart.merge(
        build_value_sets(pki)["everything"],
        {
            "agents": {
                "serviceAccountTokens": {
                    "mode": mode,
                    "issuer": "https://kubernetes.default.svc.cluster.local",
                    "jwksUrl": "https://kubernetes.default.svc.cluster.local/openid/v1/jwks",
                }
            }
        },
    )
    objects = chart.render(values, chart_dir=probe_chart)
    probe = chart.named(objects, "ConfigMap", "pending-probe")["data"]
    files = PodFiles(objects, "agent-bootstrap-approver", "approver")
    keys = _relocate(json.loads(probe["apiKeys"]), files, tmp_path / "pod")
    assert api_keys.ApiKeySettings.model_validate(keys).enabled is True
    sa = service_accounts.ServiceAccountSettings.model_validate(
        json.loads(probe["serviceAccountTokens"])
    )
    assert (sa.enabled, sa.mode) == (True, mode)
