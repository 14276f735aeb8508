"""Webhook settings: defaults, YAML file, environment, precedence and errors that name the field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from approver.config import ConfigError as ApproverConfigError
from approver.config import load_settings as load_approver_settings
from bootstrap_token import MAX_TTL_SECONDS, MIN_TTL_SECONDS
from webhook.config import (
    CONFIG_ENV,
    ENV_PREFIX,
    ConfigError,
    WebhookSettings,
    is_annotation_key,
    load_settings,
)

REQUIRED = {
    "signingKeyFile": "/keys/signing.key",
    "tlsCertFile": "/tls/tls.crt",
    "tlsKeyFile": "/tls/tls.key",
}
REQUIRED_ENV = {
    ENV_PREFIX + "SIGNING_KEY_FILE": "/keys/signing.key",
    ENV_PREFIX + "TLS_CERT_FILE": "/tls/tls.crt",
    ENV_PREFIX + "TLS_KEY_FILE": "/tls/tls.key",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AGENT_BOOTSTRAP_WEBHOOK_* variable from the outer environment leaks in."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def write(tmp_path: Path, document: Any, name: str = "webhook.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return path


class TestDefaults:
    def test_defaults(self, tmp_path: Path) -> None:
        """Only the three files are required; everything else has its documented default."""
        settings = load_settings(config_file=write(tmp_path, REQUIRED))
        assert settings.annotation_key == "agents.streamspace.io/bootstrap-token"
        assert settings.issuer == "agent-bootstrap-webhook"
        assert settings.audience == "agent-approver"
        assert settings.cluster == "default"
        assert settings.token_ttl_seconds == 3600
        assert settings.host == "0.0.0.0"
        assert settings.port == 8443
        # 1.5 MiB of pod, each byte escaped by Go's JSON encoder (x6), + 1 MiB of envelope.
        assert settings.max_request_bytes == 1536 * 1024 * 6 + 1024 * 1024 == 10 * 1024 * 1024
        assert settings.max_unescaped_request_bytes == 3 * 1024 * 1024
        assert settings.max_in_flight_body_bytes == 32 * 1024 * 1024
        assert settings.body_budget_wait_seconds == 2.0
        assert settings.trust.namespaces == frozenset()
        assert settings.signing_key_file == Path("/keys/signing.key")
        assert settings.tls_cert_file == Path("/tls/tls.crt")
        assert settings.tls_key_file == Path("/tls/tls.key")
        assert settings.tls_pem_file is None
        assert settings.inject_env.enabled is False
        assert settings.inject_env.containers == ("k8s-agent",)
        assert settings.inject_env.variable == "AGENT_API_KEY"
        assert settings.reload_interval_seconds == 5.0
        assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9090)
        assert settings.workers == 1
        assert settings.shutdown_delay_seconds == 2.0
        assert settings.shutdown_grace_seconds == 10.0
        assert settings.event_loop == "auto"

    def test_frozen(self, tmp_path: Path) -> None:
        """Settings cannot be changed after start."""
        settings = load_settings(config_file=write(tmp_path, REQUIRED))
        with pytest.raises(ValidationError):
            settings.port = 1  # type: ignore[misc]


class TestFile:
    def test_camel_case_keys(self, tmp_path: Path) -> None:
        """Every field is read from its camelCase key, nested trust policy included."""
        document = {
            **REQUIRED,
            "trust": {
                "namespaces": ["streamspace"],
                "serviceAccounts": ["streamspace:streamspace-agent"],
                "podSelector": {"matchLabels": {"role": "agent"}},
            },
            "annotationKey": "example.com/token",
            "issuer": "iss",
            "audience": "aud",
            "cluster": "prod-eu-1",
            "tokenTtlSeconds": 900,
            "host": "127.0.0.1",
            "port": 9443,
            "maxRequestBytes": 1048576,
        }
        settings = load_settings(config_file=write(tmp_path, document))
        assert settings.trust.namespaces == frozenset({"streamspace"})
        assert settings.trust.service_accounts == frozenset({"streamspace:streamspace-agent"})
        assert settings.trust.pod_selector.match_labels == {"role": "agent"}
        assert settings.annotation_key == "example.com/token"
        assert (settings.issuer, settings.audience, settings.cluster) == ("iss", "aud", "prod-eu-1")
        assert settings.token_ttl_seconds == 900
        assert (settings.host, settings.port) == ("127.0.0.1", 9443)
        assert settings.max_request_bytes == 1048576

    def test_config_env_names_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """AGENT_BOOTSTRAP_WEBHOOK_CONFIG names the file when --config is not given."""
        path = write(tmp_path, {**REQUIRED, "cluster": "from-env-file"})
        monkeypatch.setenv(CONFIG_ENV, str(path))
        settings = load_settings()
        assert settings.cluster == "from-env-file"

    def test_argument_beats_config_env(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An explicit config file wins over the one named in the environment."""
        chosen = write(tmp_path, {**REQUIRED, "cluster": "chosen"}, "a.yaml")
        other = write(tmp_path, {**REQUIRED, "cluster": "other"}, "b.yaml")
        monkeypatch.setenv(CONFIG_ENV, str(other))
        settings = load_settings(config_file=chosen)
        assert settings.cluster == "chosen"

    def test_empty_file_is_defaults(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An empty file contributes nothing (the environment then supplies the required files)."""
        path = tmp_path / "empty.yaml"
        path.write_text("")
        for key, env in [("signingKeyFile", "SIGNING_KEY_FILE"), ("tlsCertFile", "TLS_CERT_FILE"),
                         ("tlsKeyFile", "TLS_KEY_FILE")]:  # fmt: skip
            monkeypatch.setenv(ENV_PREFIX + env, REQUIRED[key])
        assert load_settings(config_file=path).cluster == "default"


class TestNewKeys:
    def test_production_keys_from_file(self, tmp_path: Path) -> None:
        """injectEnv, tlsPemFile, metrics, workers and shutdown bounds read from camelCase."""
        document = {
            "signingKeyFile": "/keys/signing.key",
            "tlsPemFile": "/tls/webhook-tls.pem",
            "injectEnv": {"enabled": True, "containers": ["k8s-agent", "init-agent"]},
            "reloadIntervalSeconds": 0.5,
            "metricsHost": "127.0.0.1",
            "metricsPort": 0,
            "workers": 2,
            "shutdownDelaySeconds": 0,
            "shutdownGraceSeconds": 25,
            "eventLoop": "asyncio",
        }
        settings = load_settings(config_file=write(tmp_path, document))
        assert settings.tls_pem_file == Path("/tls/webhook-tls.pem")
        assert (settings.tls_cert_file, settings.tls_key_file) == (None, None)
        assert settings.inject_env.enabled is True
        assert settings.inject_env.containers == ("k8s-agent", "init-agent")
        assert settings.reload_interval_seconds == 0.5
        assert (settings.metrics_host, settings.metrics_port, settings.workers) == (
            "127.0.0.1",
            0,
            2,
        )
        assert (settings.shutdown_delay_seconds, settings.shutdown_grace_seconds) == (0, 25)
        assert settings.event_loop == "asyncio"

    def test_inject_env_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Nested injectEnv fields come from AGENT_BOOTSTRAP_WEBHOOK_INJECT_ENV__*."""
        for name, value in REQUIRED_ENV.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv(ENV_PREFIX + "INJECT_ENV__ENABLED", "true")
        monkeypatch.setenv(ENV_PREFIX + "INJECT_ENV__VARIABLE", "BOOTSTRAP_TOKEN")
        monkeypatch.setenv(ENV_PREFIX + "METRICS_PORT", "9191")
        settings = load_settings()
        assert settings.inject_env.enabled is True
        assert settings.inject_env.variable == "BOOTSTRAP_TOKEN"
        assert settings.metrics_port == 9191

    @pytest.mark.parametrize(
        ("key", "valid"),
        [
            ("agents.streamspace.io/bootstrap-token", True),
            ("bootstrap-token", True),
            ("example.com/" + "a" * 63, True),
            ("example.com/" + "a" * 64, False),
            ("Example.com/token", False),
            ("/token", False),
            ("a/b/c", False),
            ("token-", False),
        ],
    )
    def test_annotation_key_syntax(self, key: str, valid: bool) -> None:
        """Annotation keys follow Kubernetes' [prefix/]name rules (the downward API needs it)."""
        assert is_annotation_key(key) is valid


class TestEnvironment:
    def test_env_without_file(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Prefixed snake_case variables configure everything, nested fields with ``__``."""
        monkeypatch.setenv(ENV_PREFIX + "SIGNING_KEY_FILE", "/k")
        monkeypatch.setenv(ENV_PREFIX + "TLS_CERT_FILE", "/c")
        monkeypatch.setenv(ENV_PREFIX + "TLS_KEY_FILE", "/ck")
        monkeypatch.setenv(ENV_PREFIX + "TOKEN_TTL_SECONDS", "600")
        monkeypatch.setenv(ENV_PREFIX + "TRUST__NAMESPACES", '["a", "b"]')
        settings = load_settings()
        assert settings.signing_key_file == Path("/k")
        assert settings.token_ttl_seconds == 600
        assert settings.trust.namespaces == frozenset({"a", "b"})

    def test_trust_as_json(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """The whole trust policy can be one JSON variable with camelCase keys."""
        monkeypatch.setenv(
            ENV_PREFIX + "TRUST", '{"namespaces": ["x"], "serviceAccounts": ["x:agent"]}'
        )
        settings = load_settings(config_file=write(tmp_path, REQUIRED))
        assert settings.trust.namespaces == frozenset({"x"})
        assert settings.trust.service_accounts == frozenset({"x:agent"})

    def test_env_beats_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """An environment variable overrides the same field in the file."""
        monkeypatch.setenv(ENV_PREFIX + "CLUSTER", "from-env")
        monkeypatch.setenv(ENV_PREFIX + "PORT", "10443")
        path = write(tmp_path, {**REQUIRED, "cluster": "from-file", "port": 9443})
        settings = load_settings(config_file=path)
        assert (settings.cluster, settings.port) == ("from-env", 10443)

    def test_unprefixed_variables_are_ignored(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Plain HOST, PORT, CLUSTER or camelCase alias names never configure the webhook."""
        for name, value in [("HOST", "10.9.9.9"), ("PORT", "1"), ("CLUSTER", "wrong"),
                            ("tokenTtlSeconds", "300"), ("annotationKey", "x/y")]:  # fmt: skip
            monkeypatch.setenv(name, value)
        settings = load_settings(config_file=write(tmp_path, REQUIRED))
        assert (settings.host, settings.port, settings.cluster) == ("0.0.0.0", 8443, "default")
        assert settings.token_ttl_seconds == 3600
        assert settings.annotation_key == "agents.streamspace.io/bootstrap-token"


class TestErrors:
    @pytest.mark.parametrize(
        "ttl", [MIN_TTL_SECONDS - 1, MAX_TTL_SECONDS + 1, 0, -5], ids=["299", "86401", "0", "neg"]
    )
    def test_ttl_out_of_bounds(self, tmp_path: Path, ttl: int) -> None:
        """A TTL outside 300..86400 s from the file names tokenTtlSeconds and the file."""
        path = write(tmp_path, {**REQUIRED, "tokenTtlSeconds": ttl})
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=path)
        assert f"tokenTtlSeconds (config file {path}): " in str(info.value)
        assert ENV_PREFIX not in str(info.value)

    @pytest.mark.parametrize("ttl", [MIN_TTL_SECONDS, MAX_TTL_SECONDS])
    def test_ttl_bounds_inclusive(self, tmp_path: Path, ttl: int) -> None:
        """300 s and 86400 s themselves are accepted."""
        path = write(tmp_path, {**REQUIRED, "tokenTtlSeconds": ttl})
        assert load_settings(config_file=path).token_ttl_seconds == ttl

    def test_missing_required_files(self, tmp_path: Path) -> None:
        """A missing key file is named with both ways to set it: file key and env variable."""
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=write(tmp_path, {"cluster": "c"}))
        assert (
            "signingKeyFile (config file key, or env AGENT_BOOTSTRAP_WEBHOOK_SIGNING_KEY_FILE): "
            "Field required"
        ) in str(info.value)

    @pytest.mark.parametrize(
        "tls",
        [
            {},
            {"tlsCertFile": "/tls/tls.crt"},
            {"tlsPemFile": "/tls/tls.pem", "tlsKeyFile": "/tls/tls.key"},
        ],
        ids=["none", "cert-without-key", "pem-and-pair"],
    )
    def test_tls_files_must_be_one_choice(self, tmp_path: Path, tls: dict[str, str]) -> None:
        """Either tlsPemFile alone or tlsCertFile with tlsKeyFile."""
        document = {"signingKeyFile": "/keys/signing.key", **tls}
        with pytest.raises(ConfigError, match="tlsPemFile"):
            load_settings(config_file=write(tmp_path, document))

    def test_unknown_keys(self, tmp_path: Path) -> None:
        """A misspelt key, top level or nested, is an error, not silently ignored."""
        document = {**REQUIRED, "trust": {"namespace": ["streamspace"]}, "tokenTTL": 5}
        path = write(tmp_path, document)
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=path)
        assert f"trust.namespace: unknown key in config file {path}" in str(info.value)
        assert f"tokenTTL: unknown key in config file {path}" in str(info.value)

    def test_unknown_key_in_a_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A misspelt key inside a JSON variable names that variable, not a file key."""
        for name, value in REQUIRED_ENV.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv(ENV_PREFIX + "TRUST", '{"namespace": ["streamspace"]}')
        with pytest.raises(ConfigError) as info:
            load_settings()
        assert f"{ENV_PREFIX}TRUST: unknown setting" in str(info.value)

    @pytest.mark.parametrize(
        ("document", "field"),
        [
            ({"port": -1}, "port"),
            ({"port": 70000}, "port"),
            ({"maxRequestBytes": 1024}, "maxRequestBytes"),
            ({"maxUnescapedRequestBytes": 1024}, "maxUnescapedRequestBytes"),
            ({"bodyBudgetWaitSeconds": -1}, "bodyBudgetWaitSeconds"),
            ({"bodyBudgetWaitSeconds": 31}, "bodyBudgetWaitSeconds"),
            ({"annotationKey": ""}, "annotationKey"),
            ({"annotationKey": "a/b/c"}, "annotationKey"),
            ({"annotationKey": "x~y"}, "annotationKey"),
            ({"injectEnv": {"variable": "1BAD"}}, "injectEnv.variable"),
            ({"injectEnv": {"containers": ["Not_A_Label"]}}, "injectEnv.containers"),
            ({"injectEnv": {"containers": []}}, "injectEnv.containers"),
            ({"metricsPort": 70000}, "metricsPort"),
            ({"workers": 0}, "workers"),
            ({"reloadIntervalSeconds": -1}, "reloadIntervalSeconds"),
            ({"shutdownGraceSeconds": -1}, "shutdownGraceSeconds"),
            ({"eventLoop": "trio"}, "eventLoop"),
            ({"trust": {"serviceAccounts": ["no-colon"]}}, "trust.serviceAccounts"),
            ({"trust": {"podSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]}}},
             "trust.podSelector.matchExpressions.0"),
        ],
        ids=["port-negative", "port-high", "max-bytes", "unescaped-bytes", "wait-negative",
             "wait-high", "annotation-empty", "annotation-slashes",
             "annotation-tilde", "env-name", "container-name", "no-containers", "metrics-port",
             "workers", "reload-negative", "grace-negative", "event-loop", "sa-pair", "selector"],
    )  # fmt: skip
    def test_bad_values_name_the_field(
        self, tmp_path: Path, document: dict[str, Any], field: str
    ) -> None:
        """Each invalid value from the file is reported by its file key and the file, not by an
        environment variable that was never set."""
        path = write(tmp_path, {**REQUIRED, **document})
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=path)
        assert f"{field} (config file {path}): " in str(info.value)
        assert ENV_PREFIX not in str(info.value)

    @pytest.mark.parametrize(
        ("variable", "value", "field"),
        [
            ("INJECT_ENV", '{"variable": "1BAD"}', "injectEnv.variable"),
            ("INJECT_ENV", '{"containers": []}', "injectEnv.containers"),
            ("TRUST", '{"serviceAccounts": ["no-colon"]}', "trust.serviceAccounts"),
        ],
        ids=["inject-env-variable", "inject-env-containers", "trust-service-accounts"],
    )
    def test_json_variable_is_named(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
    ) -> None:
        """A bad nested value set by a whole-object JSON variable names that variable (the one
        actually set), not the nested variable nor the file setting the same key."""
        document = {**REQUIRED, "injectEnv": {"enabled": True}, "trust": {"namespaces": ["a"]}}
        path = write(tmp_path, document)
        monkeypatch.setenv(ENV_PREFIX + variable, value)
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=path)
        assert f"{field} (env {ENV_PREFIX}{variable}): " in str(info.value)
        assert str(path) not in str(info.value)

    def test_file_and_env_errors_each_name_their_source(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With bad values in both sources, each line names its own source: the file key and
        the file, or the variable (which wins over the same key in the file)."""
        path = write(tmp_path, {**REQUIRED, "port": 70000, "workers": 2, "tokenTtlSeconds": 600})
        monkeypatch.setenv(ENV_PREFIX + "WORKERS", "0")
        monkeypatch.setenv(ENV_PREFIX + "TOKEN_TTL_SECONDS", "10")
        monkeypatch.setenv(ENV_PREFIX + "INJECT_ENV__VARIABLE", "1BAD")
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=path)
        lines = str(info.value).splitlines()
        assert lines[0] == "invalid configuration:"
        assert sorted(line.split(": ")[0].strip() for line in lines[1:]) == [
            f"injectEnv.variable (env {ENV_PREFIX}INJECT_ENV__VARIABLE)",
            f"port (config file {path})",
            f"tokenTtlSeconds (env {ENV_PREFIX}TOKEN_TTL_SECONDS)",
            f"workers (env {ENV_PREFIX}WORKERS)",
        ]

    def test_invalid_json_in_a_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A variable that must hold JSON but does not is a ConfigError naming the field (not a
        pydantic-settings traceback), without the value."""
        for name, value in REQUIRED_ENV.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv(ENV_PREFIX + "TRUST__NAMESPACES", "[s3cr3t")
        with pytest.raises(ConfigError) as info:
            load_settings()
        message = str(info.value)
        assert message.startswith("invalid configuration:\n  ")
        assert f"trust.namespaces (env {ENV_PREFIX}TRUST__NAMESPACES): not valid JSON" in message
        assert "s3cr3t" not in message

    def test_values_are_not_echoed(self, tmp_path: Path) -> None:
        """The message names the field but does not repeat the rejected value."""
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=write(tmp_path, {**REQUIRED, "port": "s3cr3t-ish"}))
        assert "port" in str(info.value)
        assert "s3cr3t-ish" not in str(info.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A config file that does not exist is named with the OS reason."""
        with pytest.raises(ConfigError, match=r"config file .*nope.yaml: cannot read: No such"):
            load_settings(config_file=tmp_path / "nope.yaml")

    def test_invalid_yaml(self, tmp_path: Path) -> None:
        """Broken YAML is reported with its line."""
        path = tmp_path / "bad.yaml"
        path.write_text("cluster: ok\ntrust: [unclosed\n")
        with pytest.raises(ConfigError, match=r"not valid YAML at line \d"):
            load_settings(config_file=path)

    def test_top_level_not_mapping(self, tmp_path: Path) -> None:
        """A YAML list at top level is refused."""
        with pytest.raises(ConfigError, match="top level must be a mapping"):
            load_settings(config_file=write(tmp_path, ["a"]))


class TestDescribeField:
    """``WebhookSettings.describe_field`` names a field where it was set, for errors found after
    loading (TLS and signing key files)."""

    def test_from_the_file(self, tmp_path: Path) -> None:
        path = write(tmp_path, REQUIRED)
        settings = load_settings(config_file=path)
        assert settings.describe_field("tlsCertFile") == f"tlsCertFile (config file {path})"

    def test_from_the_environment(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A variable wins over the file, so the variable is named."""
        monkeypatch.setenv(ENV_PREFIX + "SIGNING_KEY_FILE", "/other/signing.key")
        settings = load_settings(config_file=write(tmp_path, REQUIRED))
        assert settings.describe_field("signingKeyFile") == (
            f"signingKeyFile (env {ENV_PREFIX}SIGNING_KEY_FILE)"
        )

    def test_default_names_both_ways(self, tmp_path: Path) -> None:
        settings = load_settings(config_file=write(tmp_path, REQUIRED))
        assert settings.describe_field("eventLoop") == (
            f"eventLoop (config file key, or env {ENV_PREFIX}EVENT_LOOP)"
        )

    def test_settings_built_directly(self) -> None:
        """Settings not built by load_settings name the file key and the variable."""
        settings = WebhookSettings.model_validate(REQUIRED)
        assert settings.describe_field("tlsPemFile") == (
            f"tlsPemFile (env {ENV_PREFIX}TLS_PEM_FILE)"
        )


def test_environment_overrides_a_key_set_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable wins over the same setting written in camelCase in the file."""
    from webhook.config import load_settings

    config = tmp_path / "webhook.yaml"
    config.write_text(
        "tokenTtlSeconds: 900\nsigningKeyFile: /k\ntlsCertFile: /c\ntlsKeyFile: /t\n"
        "trust: {namespaces: [a]}\n"
    )
    monkeypatch.setenv("AGENT_BOOTSTRAP_WEBHOOK_TOKEN_TTL_SECONDS", "1200")
    monkeypatch.setenv("AGENT_BOOTSTRAP_WEBHOOK_TRUST__NAMESPACES", '["b"]')
    settings = load_settings(config_file=config)
    assert settings.token_ttl_seconds == 1200
    assert settings.trust.namespaces == frozenset({"b"})


class TestListenPort:
    """One rule for both services' listening port: 1..65535 (issue 17: the approver refused
    port 0 while the webhook took it)."""

    @pytest.mark.parametrize(
        ("port", "rule"),
        [(0, "greater than or equal to 1"), (65536, "less than or equal to 65535")],
    )
    def test_both_services_refuse_the_same_ports(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: int, rule: str
    ) -> None:
        """The webhook and the approver refuse 0 and 65536 with the same words."""
        path = write(tmp_path, {**REQUIRED, "port": port})
        with pytest.raises(ConfigError) as webhook_error:
            load_settings(config_file=path)
        approver_path = write(tmp_path, {"port": port}, "approver.yaml")
        with pytest.raises(ApproverConfigError) as approver_error:
            load_approver_settings(config_file=approver_path, environ={})
        assert str(webhook_error.value) == (
            f"invalid configuration:\n  port (config file {path}): Input should be {rule}"
        )
        assert str(approver_error.value) == (
            f"invalid configuration:\n  port (config file {approver_path}): Input should be {rule}"
        )

    @pytest.mark.parametrize("port", [1, 65535])
    def test_both_services_take_the_bounds(self, tmp_path: Path, port: int) -> None:
        assert load_settings(config_file=write(tmp_path, {**REQUIRED, "port": port})).port == port
        approver = load_approver_settings(
            config_file=write(tmp_path, {"port": port}, "approver.yaml"), environ={}
        )
        assert approver.port == port


class TestInvalidJsonInTheEnvironment:
    """A variable for a list or an object that is not JSON names the variable and its file key
    (issue 17: it read `error parsing value for field "trust" from source
    "EnvSettingsSource"`), never the value."""

    HINT = (
        "not valid JSON (a list or an object is written as JSON in the environment, "
        'e.g. ["a"] or {"key": "value"})'
    )

    @pytest.mark.parametrize(
        ("variable", "key"),
        [
            ("TRUST", "trust"),
            ("TRUST__NAMESPACES", "trust.namespaces"),
            ("trust__pod_selector", "trust.podSelector"),
            ("INJECT_ENV__CONTAINERS", "injectEnv.containers"),
        ],
    )
    def test_names_the_variable(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, key: str
    ) -> None:
        name = ENV_PREFIX + variable if variable.isupper() else ENV_PREFIX.lower() + variable
        monkeypatch.setenv(name, "[streamspace, sekrit-value")
        with pytest.raises(ConfigError) as caught:
            load_settings(config_file=write(tmp_path, REQUIRED))
        assert str(caught.value) == f"invalid configuration:\n  {key} (env {name}): {self.HINT}"

    def test_only_the_broken_variable_is_named(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Valid JSON and plain strings next to it are not blamed."""
        monkeypatch.setenv(ENV_PREFIX + "TRUST__NAMESPACES", '["streamspace"]')
        monkeypatch.setenv(ENV_PREFIX + "TRUST__SERVICE_ACCOUNTS", "streamspace:agent")
        monkeypatch.setenv(ENV_PREFIX + "CLUSTER", "prod")
        with pytest.raises(ConfigError) as caught:
            load_settings(config_file=write(tmp_path, REQUIRED))
        assert str(caught.value) == (
            "invalid configuration:\n  trust.serviceAccounts "
            f"(env {ENV_PREFIX}TRUST__SERVICE_ACCOUNTS): {self.HINT}"
        )

    @pytest.mark.parametrize(
        ("variable", "key"),
        [
            ("SERVICE_ACCOUNT_TOKENS__ALLOW", "serviceAccountTokens.allow"),
            ("CONTROL_PLANE__STREAMSPACE", "controlPlane.streamspace"),
        ],
    )
    def test_the_approver_names_its_variable_too(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, key: str
    ) -> None:
        """The approver's nested settings (an optional section too, which pydantic reads as
        text then refuses) name the variable the same way."""
        name = "AGENT_BOOTSTRAP_APPROVER_" + variable
        monkeypatch.setenv(name, "streamspace:streamspace-agent")
        with pytest.raises(ApproverConfigError) as caught:
            load_approver_settings(environ={})
        assert str(caught.value).startswith(f"invalid configuration:\n  {key} (env {name}): ")
        assert "streamspace-agent" not in str(caught.value)


class TestTrustedNamespaces:
    """Hardening issue item 14, the webhook's side (the same TrustPolicy as the approver's)."""

    def test_a_name_that_is_not_a_namespace_stops_the_webhook(self, tmp_path: Path) -> None:
        path = write(tmp_path, {**REQUIRED, "trust": {"namespaces": ["Bad_NS"]}})
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=path)
        assert f"trust.namespaces (config file {path})" in str(info.value)

    def test_kube_system_and_the_release_namespace_stop_the_webhook(self, tmp_path: Path) -> None:
        system = write(tmp_path, {**REQUIRED, "trust": {"namespaces": ["kube-system"]}})
        with pytest.raises(ConfigError, match="allowSensitiveNamespaces"):
            load_settings(config_file=system)
        own = write(
            tmp_path,
            {**REQUIRED, "releaseNamespace": "ops", "trust": {"namespaces": ["ops"]}},
            name="own.yaml",
        )
        with pytest.raises(ConfigError, match=r"trust\.namespaces lists 'ops'"):
            load_settings(config_file=own)

    def test_listed_twice_is_trusted(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            {
                **REQUIRED,
                "releaseNamespace": "ops",
                "trust": {"namespaces": ["ops"], "allowSensitiveNamespaces": ["ops"]},
            },
        )
        assert load_settings(config_file=path).trust.namespaces == {"ops"}
