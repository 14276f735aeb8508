"""Settings: defaults, the YAML file (camelCase), the environment, and errors that name fields."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from approver.config import CONFIG_ENV, ConfigError, env_name, load_settings
from approver.resources import load_key_set

PREFIX = "AGENT_BOOTSTRAP_APPROVER_"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No approver variable from the outer environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / name for name in ("jwks.json", "tokens", "tls.crt", "tls.key")}
    for path in paths.values():
        path.write_text("placeholder\n", encoding="utf-8")
    return paths


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "approver.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class TestDefaults:
    def test_defaults(self) -> None:
        """Without file or environment: auto-approval off, SQLite, port 8444, Retry-After 5 s."""
        settings = load_settings(environ={})
        assert settings.auto_approve.enabled is False
        assert settings.database_url == "sqlite+aiosqlite:///./agent-bootstrap.db"
        assert (settings.host, settings.port, settings.retry_after_seconds) == ("0.0.0.0", 8444, 5)
        assert (settings.token.issuer, settings.token.audience) == (
            "agent-bootstrap-webhook",
            "agent-approver",
        )
        assert settings.token.leeway_seconds == 30
        assert settings.token.jwks_file is None
        assert settings.trust.namespaces == frozenset()
        assert settings.agent_id_prefix is None
        assert settings.admin_tokens_file is None
        assert settings.tls_enabled is False


class TestFile:
    def test_camel_case_file(self, tmp_path: Path, files: dict[str, Path]) -> None:
        """Every field reads from its camelCase key in the YAML file."""
        path = _write(
            tmp_path,
            f"""
autoApprove:
  enabled: true
trust:
  namespaces: [streamspace]
  serviceAccounts: ["streamspace:streamspace-agent"]
token:
  issuer: webhook-prod
  audience: approver-prod
  leewaySeconds: 10
  jwksFile: {files["jwks.json"]}
agentIdPrefix: k8s-prod-cluster
databaseUrl: postgresql+asyncpg://approver@db:5432/agents
adminTokensFile: {files["tokens"]}
tlsCertFile: {files["tls.crt"]}
tlsKeyFile: {files["tls.key"]}
host: 127.0.0.1
port: 9444
retryAfterSeconds: 7
""",
        )
        settings = load_settings(config_file=path, environ={})
        assert settings.auto_approve.enabled is True
        assert settings.trust.namespaces == frozenset({"streamspace"})
        assert settings.trust.service_accounts == frozenset({"streamspace:streamspace-agent"})
        assert (settings.token.issuer, settings.token.audience) == ("webhook-prod", "approver-prod")
        assert settings.token.leeway_seconds == 10
        assert settings.token.jwks_file == files["jwks.json"]
        assert settings.agent_id_prefix == "k8s-prod-cluster"
        assert settings.database_url == "postgresql+asyncpg://approver@db:5432/agents"
        assert settings.admin_tokens_file == files["tokens"]
        assert settings.tls_enabled is True
        assert (settings.host, settings.port, settings.retry_after_seconds) == (
            "127.0.0.1",
            9444,
            7,
        )

    def test_config_env_names_the_file(self, tmp_path: Path) -> None:
        """AGENT_BOOTSTRAP_APPROVER_CONFIG names the file when --config is not given."""
        path = _write(tmp_path, "port: 9555\n")
        assert load_settings(environ={CONFIG_ENV: str(path)}).port == 9555

    def test_environment_overrides_the_file(
        self, tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Prefixed variables (nested with __) win over the file; unprefixed ones are ignored."""
        path = _write(tmp_path, "port: 9555\nagentIdPrefix: from-file\n")
        monkeypatch.setenv(PREFIX + "PORT", "9666")
        monkeypatch.setenv(PREFIX + "AUTO_APPROVE__ENABLED", "true")
        monkeypatch.setenv(PREFIX + "TRUST__NAMESPACES", '["streamspace"]')
        monkeypatch.setenv(PREFIX + "TOKEN__JWKS_FILE", str(files["jwks.json"]))
        monkeypatch.setenv(PREFIX + "AGENT_ID_PREFIX", "from-env")
        monkeypatch.setenv("HOST", "10.0.0.1")
        settings = load_settings(config_file=path, environ={})
        assert settings.port == 9666
        assert settings.auto_approve.enabled is True
        assert settings.trust.namespaces == frozenset({"streamspace"})
        assert settings.token.jwks_file == files["jwks.json"]
        assert settings.agent_id_prefix == "from-env"
        assert settings.host == "0.0.0.0"


class TestErrors:
    @pytest.mark.parametrize(
        ("yaml_text", "names"),
        [
            ("autoApprove: {enabled: true}\ntrust: {namespaces: [s]}\n", ["token.jwksFile"]),
            ("port: 70000\n", ["port (config file {file}): "]),
            ("token: {jwksFile: /nonexistent/jwks.json}\n",
             ["token.jwksFile (config file {file}): "]),
            ("namespaces: [streamspace]\n", ["namespaces: unknown key in config file {file}"]),
            ("trust: {namespace: [streamspace]}\n",
             ["trust.namespace: unknown key in config file {file}"]),
            ("retryAfterSeconds: 0\n", ["retryAfterSeconds (config file {file}): "]),
            ("token: {leewaySeconds: -1}\n", ["token.leewaySeconds (config file {file}): "]),
            ("trust: {serviceAccounts: [streamspace]}\n",
             ["trust.serviceAccounts (config file {file}): "]),
        ],
        ids=["enabled without jwksFile", "port out of range", "missing jwks file",
             "misplaced key", "misspelt key", "retry-after zero", "negative leeway",
             "service account without namespace"],
    )  # fmt: skip
    def test_bad_values_name_the_field(
        self, tmp_path: Path, yaml_text: str, names: list[str]
    ) -> None:
        """A bad value from the file stops loading with a message naming the file key and the
        file, not an environment variable that was never set."""
        path = _write(tmp_path, yaml_text)
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=path, environ={})
        for name in names:
            assert name.format(file=path) in str(info.value)
        assert PREFIX not in str(info.value)

    @pytest.mark.parametrize(
        ("variable", "value", "names"),
        [
            ("PORT", "70000", ["port (env AGENT_BOOTSTRAP_APPROVER_PORT): "]),
            ("RETRY_AFTER_SECONDS", "0",
             ["retryAfterSeconds (env AGENT_BOOTSTRAP_APPROVER_RETRY_AFTER_SECONDS): "]),
            ("TOKEN__LEEWAY_SECONDS", "-1",
             ["token.leewaySeconds (env AGENT_BOOTSTRAP_APPROVER_TOKEN__LEEWAY_SECONDS): "]),
            ("TOKEN", '{"leewaySeconds": -1}',
             ["token.leewaySeconds (env AGENT_BOOTSTRAP_APPROVER_TOKEN): "]),
            ("TRUST__SERVICE_ACCOUNTS", '["streamspace"]',
             ["trust.serviceAccounts (env AGENT_BOOTSTRAP_APPROVER_TRUST__SERVICE_ACCOUNTS): "]),
        ],
        ids=["port", "retry-after", "nested", "nested as JSON object", "list"],
    )  # fmt: skip
    def test_env_values_name_the_variable(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        variable: str,
        value: str,
        names: list[str],
    ) -> None:
        """A bad value from the environment names the variable that set it, not the file, even
        when the file sets the same key (the variable wins)."""
        path = _write(tmp_path, "port: 9555\nretryAfterSeconds: 5\ntoken: {leewaySeconds: 10}\n")
        monkeypatch.setenv(PREFIX + variable, value)
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=path, environ={})
        for name in names:
            assert name in str(info.value)
        assert str(path) not in str(info.value)

    def test_file_and_env_errors_each_name_their_source(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With one bad value in each source, each line names its own source."""
        path = _write(tmp_path, "port: 70000\n")
        monkeypatch.setenv(PREFIX + "RETRY_AFTER_SECONDS", "0")
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=path, environ={})
        lines = str(info.value).splitlines()[1:]
        assert sorted(line.split(": ")[0].strip() for line in lines) == [
            f"port (config file {path})",
            f"retryAfterSeconds (env {PREFIX}RETRY_AFTER_SECONDS)",
        ]

    def test_invalid_json_in_a_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A variable that must hold JSON but does not is a ConfigError naming the field (not a
        traceback), without the value."""
        monkeypatch.setenv(PREFIX + "TRUST__NAMESPACES", "[s3cr3t")
        with pytest.raises(ConfigError) as info:
            load_settings(environ={})
        assert f"trust.namespaces (env {PREFIX}TRUST__NAMESPACES): not valid JSON" in str(
            info.value
        )
        assert "s3cr3t" not in str(info.value)

    def test_auto_approve_needs_a_trusted_namespace(
        self, tmp_path: Path, files: dict[str, Path]
    ) -> None:
        """Auto-approval with no trusted namespace is refused: no token could ever approve."""
        text = f"autoApprove: {{enabled: true}}\ntoken: {{jwksFile: {files['jwks.json']}}}\n"
        with pytest.raises(ConfigError, match=r"trust\.namespaces"):
            load_settings(config_file=_write(tmp_path, text), environ={})

    def test_half_a_tls_pair(self, tmp_path: Path, files: dict[str, Path]) -> None:
        """A certificate without its key (or the reverse) is refused."""
        text = f"tlsCertFile: {files['tls.crt']}\n"
        with pytest.raises(ConfigError, match="tlsCertFile and tlsKeyFile"):
            load_settings(config_file=_write(tmp_path, text), environ={})

    def test_values_are_not_echoed(self, tmp_path: Path) -> None:
        """The message names the field, never the offending value (it may be a secret)."""
        text = "databaseUrl: 12345\nport: not-a-port-s3cr3t\n"
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=_write(tmp_path, text), environ={})
        assert "s3cr3t" not in str(info.value)
        assert "port" in str(info.value)

    @pytest.mark.parametrize(
        ("text", "message"),
        [("port: [\n", "not valid YAML at line"), ("- a\n- b\n", "top level must be a mapping")],
        ids=["invalid yaml", "list at top level"],
    )
    def test_unreadable_file(self, tmp_path: Path, text: str, message: str) -> None:
        """A file that is not a YAML mapping is refused with its path."""
        path = _write(tmp_path, text)
        with pytest.raises(ConfigError, match=message) as info:
            load_settings(config_file=path, environ={})
        assert str(path) in str(info.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A --config that does not exist is refused."""
        with pytest.raises(ConfigError, match="cannot read"):
            load_settings(config_file=tmp_path / "absent.yaml", environ={})


class TestEnvName:
    @pytest.mark.parametrize(
        ("loc", "expected"),
        [
            (("autoApprove", "enabled"), PREFIX + "AUTO_APPROVE__ENABLED"),
            (("token", "jwksFile"), PREFIX + "TOKEN__JWKS_FILE"),
            (("trust", "serviceAccounts"), PREFIX + "TRUST__SERVICE_ACCOUNTS"),
            (("databaseUrl",), PREFIX + "DATABASE_URL"),
        ],
    )
    def test_env_name(self, loc: tuple[str, ...], expected: str) -> None:
        """File keys map to their environment variable names."""
        assert env_name(loc) == expected


class TestLifecycleSettings:
    def test_defaults(self) -> None:
        """Kubernetes off, 24 h pending TTL, 5 min sweeps, group commit of 64, no quota."""
        settings = load_settings(environ={})
        assert settings.kubernetes.enabled is False
        assert settings.kubernetes.kubeconfig is None
        assert settings.kubernetes.token_annotation == "agents.streamspace.io/bootstrap-token"
        assert (settings.kubernetes.watch, settings.kubernetes.watch_timeout_seconds) == (True, 300)
        assert (settings.pending_ttl_seconds, settings.sweep_interval_seconds) == (86400, 300)
        assert (settings.write_batch_size, settings.database_pool_size) == (64, 10)
        assert settings.write_concurrency == 1
        assert settings.auto_approve.max_active_per_namespace is None
        assert settings.auto_approve.max_active_per_owner is None
        assert settings.review_tokens_file is None

    def test_file_and_environment(
        self, tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The new keys read from camelCase YAML and from nested environment variables."""
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text("placeholder\n", encoding="utf-8")
        path = _write(
            tmp_path,
            f"""
kubernetes:
  enabled: true
  kubeconfig: {kubeconfig}
  tokenAnnotation: example.com/token
  requestTimeoutSeconds: 2.5
  watchTimeoutSeconds: 60
autoApprove:
  maxActivePerNamespace: 50
  maxActivePerOwner: 20
pendingTtlSeconds: 3600
reviewTokensFile: {files["tokens"]}
""",
        )
        monkeypatch.setenv(PREFIX + "WRITE_BATCH_SIZE", "1")
        monkeypatch.setenv(PREFIX + "KUBERNETES__WATCH", "false")
        settings = load_settings(config_file=path, environ={})
        assert settings.kubernetes.enabled is True
        assert settings.kubernetes.kubeconfig == kubeconfig
        assert settings.kubernetes.token_annotation == "example.com/token"
        assert (settings.kubernetes.request_timeout_seconds, settings.kubernetes.watch) == (
            2.5,
            False,
        )
        assert (settings.auto_approve.max_active_per_namespace,
                settings.auto_approve.max_active_per_owner) == (50, 20)  # fmt: skip
        assert (settings.pending_ttl_seconds, settings.write_batch_size) == (3600, 1)
        assert settings.review_tokens_file == files["tokens"]

    @pytest.mark.parametrize(
        ("text", "mentions"),
        [
            ("kubernetes:\n  kubeconfig: {kubeconfig}\n", "kubernetes.kubeconfig is set"),
            ("autoApprove:\n  maxActivePerNamespace: 0\n", "autoApprove.maxActivePerNamespace"),
            ("pendingTtlSeconds: 5\n", "pendingTtlSeconds"),
            ("writeBatchSize: 0\n", "writeBatchSize"),
            ("kubernetes:\n  enabeld: true\n", "kubernetes.enabeld: unknown key"),
        ],
    )
    def test_invalid(self, tmp_path: Path, text: str, mentions: str) -> None:
        """Bad lifecycle settings are refused at start, naming the field."""
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text("x\n", encoding="utf-8")
        path = _write(tmp_path, text.format(kubeconfig=kubeconfig))
        with pytest.raises(ConfigError, match=mentions):
            load_settings(config_file=path, environ={})


class TestLaterErrors:
    """Errors found when the service opens a file the settings name use the same words."""

    def test_jwks_file_from_the_file(self, tmp_path: Path) -> None:
        """A JWKS named in the config file that holds no key names the file key and the file."""
        jwks = tmp_path / "jwks.json"
        jwks.write_text('{"keys": []}', encoding="utf-8")
        path = _write(tmp_path, f"token: {{jwksFile: {jwks}}}\n")
        settings = load_settings(config_file=path, environ={})
        with pytest.raises(ConfigError) as info:
            load_key_set(settings)
        assert str(info.value).startswith(f"token.jwksFile (config file {path}): ")
        assert PREFIX not in str(info.value)

    def test_jwks_file_that_is_not_json(self, tmp_path: Path) -> None:
        """A jwks.json that is not JSON is reported as such, with the line and column, not as
        "not a PEM public key" (issue 17)."""
        jwks = tmp_path / "jwks.json"
        jwks.write_text("kind: ConfigMap\n", encoding="utf-8")
        path = _write(tmp_path, f"token: {{jwksFile: {jwks}}}\n")
        settings = load_settings(config_file=path, environ={})
        with pytest.raises(ConfigError) as info:
            load_key_set(settings)
        assert str(info.value) == (
            f"token.jwksFile (config file {path}): JWKS is not valid JSON (line 1, column 1)"
        )

    def test_jwks_file_from_the_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The same JWKS named by a variable names the variable (the file sets it too: the
        variable wins, and is the one to fix)."""
        jwks = tmp_path / "jwks.json"
        jwks.write_text('{"keys": []}', encoding="utf-8")
        good = tmp_path / "other.json"
        good.write_text("{}", encoding="utf-8")
        path = _write(tmp_path, f"token: {{jwksFile: {good}}}\n")
        monkeypatch.setenv(PREFIX + "TOKEN__JWKS_FILE", str(jwks))
        settings = load_settings(config_file=path, environ={})
        with pytest.raises(ConfigError) as info:
            load_key_set(settings)
        assert str(info.value).startswith(f"token.jwksFile (env {PREFIX}TOKEN__JWKS_FILE): ")
        assert str(path) not in str(info.value)

    def test_default_names_both_ways(self) -> None:
        """A field left at its default is named with both ways to set it."""
        settings = load_settings(environ={})
        assert settings.describe_field("databaseUrl") == (
            f"databaseUrl (config file key, or env {PREFIX}DATABASE_URL)"
        )


class TestTrustedNamespaces:
    """Hardening issue item 14: trusted namespaces are Kubernetes names, never the system
    namespaces or agent-bootstrap's own unless listed in trust.allowSensitiveNamespaces."""

    def test_a_name_that_is_not_a_namespace_stops_the_approver_naming_the_key(
        self, tmp_path: Path
    ) -> None:
        path = _write(tmp_path, "trust: {namespaces: [streamspace, Bad_NS]}\n")
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=path, environ={})
        assert f"trust.namespaces (config file {path})" in str(info.value)
        assert "DNS-1123 label" in str(info.value)

    def test_kube_system_stops_the_approver(self, tmp_path: Path) -> None:
        path = _write(tmp_path, "trust: {namespaces: [kube-system]}\n")
        with pytest.raises(ConfigError, match="allowSensitiveNamespaces") as info:
            load_settings(config_file=path, environ={})
        assert "trust (config file" in str(info.value)

    def test_the_release_namespace_stops_the_approver(self, tmp_path: Path) -> None:
        text = "releaseNamespace: agent-bootstrap\ntrust: {namespaces: [agent-bootstrap]}\n"
        with pytest.raises(ConfigError, match=r"trust\.namespaces lists 'agent-bootstrap'"):
            load_settings(config_file=_write(tmp_path, text), environ={})

    def test_the_release_namespace_defaults_to_the_pods_own(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """In a cluster the pod's namespace comes from its service account volume."""
        own = tmp_path / "namespace"
        own.write_text("agents-infra\n", encoding="utf-8")
        monkeypatch.setattr("bootstrap_token.policy.IN_CLUSTER_NAMESPACE_FILE", own)
        path = _write(tmp_path, "trust: {namespaces: [agents-infra]}\n")
        with pytest.raises(ConfigError, match="'agents-infra', the namespace agent-bootstrap"):
            load_settings(config_file=path, environ={})
        ok = _write(tmp_path, "trust: {namespaces: [streamspace]}\n")
        assert load_settings(config_file=ok, environ={}).release_namespace == "agents-infra"

    def test_listed_twice_is_trusted(self, tmp_path: Path) -> None:
        text = (
            "releaseNamespace: agent-bootstrap\n"
            "trust: {namespaces: [agent-bootstrap, kube-system], "
            "allowSensitiveNamespaces: [agent-bootstrap, kube-system]}\n"
        )
        settings = load_settings(config_file=_write(tmp_path, text), environ={})
        assert settings.trust.namespaces == {"agent-bootstrap", "kube-system"}
