"""Webhook settings: environment variables over an optional YAML file over defaults.

Sources, highest precedence first:

1. environment: ``AGENT_BOOTSTRAP_WEBHOOK_<FIELD>`` with the snake_case field name, e.g.
   ``AGENT_BOOTSTRAP_WEBHOOK_TOKEN_TTL_SECONDS=900``; nested fields with ``__``, e.g.
   ``AGENT_BOOTSTRAP_WEBHOOK_TRUST__NAMESPACES='["streamspace"]'``, or the whole object as JSON
   (``AGENT_BOOTSTRAP_WEBHOOK_TRUST='{"namespaces": ["streamspace"]}'``);
2. the YAML file named by ``--config`` or ``AGENT_BOOTSTRAP_WEBHOOK_CONFIG``, camelCase keys::

       trust:
         namespaces: [streamspace]
         serviceAccounts: ["streamspace:streamspace-agent"]
       cluster: prod-eu-1
       tokenTtlSeconds: 3600
       signingKeyFile: /etc/agent-bootstrap/signing/key.pem
       tlsCertFile: /etc/agent-bootstrap/tls/tls.crt
       tlsKeyFile: /etc/agent-bootstrap/tls/tls.key

3. the defaults below.

Only prefixed variables are read: a plain ``HOST`` or ``PORT`` in the environment never
changes the webhook. Unknown keys in the file are an error, not ignored: a misspelt
``namespaces`` must not silently trust nothing.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bootstrap_token import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, MIN_TTL_SECONDS, TrustPolicy

ENV_PREFIX = "AGENT_BOOTSTRAP_WEBHOOK_"
#: Environment variable naming the YAML config file (``--config`` wins over it).
CONFIG_ENV = ENV_PREFIX + "CONFIG"

#: 3 MiB. The API server caps request bodies at 3 MiB (etcd's default object limit is 1.5 MiB,
#: and the review carries the object, plus oldObject for updates, plus the envelope), so an
#: AdmissionReview for a big pod (many containers, long env lists, managedFields) can reach a
#: few MiB. aiohttp's own default of 1 MiB would reject those with 413 and leave them unstamped.
DEFAULT_MAX_REQUEST_BYTES = 3 * 1024 * 1024

# The file to read while load_settings() builds a WebhookSettings; see settings_customise_sources.
_config_file: ContextVar[Path | None] = ContextVar("webhook_config_file", default=None)


class ConfigError(ValueError):
    """The configuration cannot be used. The message names the field (file key and env name)."""


class WebhookSettings(BaseSettings):
    """Everything the webhook needs at start. Immutable; validated once at start.

    ================  ===========================  =======  ===================================
    file key          env (after the prefix)       unit     default
    ================  ===========================  =======  ===================================
    trust             TRUST, TRUST__NAMESPACES...  -        nothing trusted; agent selector
                                                            app.kubernetes.io/component=k8s-agent
    annotationKey     ANNOTATION_KEY               -        agents.streamspace.io/bootstrap-token
    issuer            ISSUER                       -        agent-bootstrap-webhook
    audience          AUDIENCE                     -        agent-approver
    cluster           CLUSTER                      -        default
    tokenTtlSeconds   TOKEN_TTL_SECONDS            seconds  3600 (bounds 300..86400)
    signingKeyFile    SIGNING_KEY_FILE             path     required
    tlsCertFile       TLS_CERT_FILE                path     required
    tlsKeyFile        TLS_KEY_FILE                 path     required
    host              HOST                         -        0.0.0.0
    port              PORT                         -        8443
    maxRequestBytes   MAX_REQUEST_BYTES            bytes    3 MiB (3145728)
    ================  ===========================  =======  ===================================
    """

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix=ENV_PREFIX,
        # Prefix both the field name and its camelCase alias, so no unprefixed variable (HOST,
        # PORT) is ever read.
        env_prefix_target="all",
        env_nested_delimiter="__",
        validate_by_name=True,
        validate_by_alias=True,
    )

    trust: TrustPolicy = Field(
        default_factory=TrustPolicy,
        description="Trusted namespaces, service accounts and agent pod selector. Default: "
        "no namespace trusted (nothing is stamped), selector "
        "app.kubernetes.io/component=k8s-agent.",
    )
    annotation_key: str = Field(
        default="agents.streamspace.io/bootstrap-token",
        alias="annotationKey",
        min_length=1,
        max_length=316,  # 253 (DNS prefix) + "/" + 63 (name): Kubernetes annotation key limit.
        description="Pod annotation that carries the token. "
        "Default agents.streamspace.io/bootstrap-token.",
    )
    issuer: str = Field(
        default="agent-bootstrap-webhook",
        min_length=1,
        description="The tokens' 'iss' claim. Default agent-bootstrap-webhook.",
    )
    audience: str = Field(
        default="agent-approver",
        min_length=1,
        description="The tokens' 'aud' claim; the approver checks it. Default agent-approver.",
    )
    cluster: str = Field(
        default="default",
        min_length=1,
        description="The tokens' 'cluster' claim: this cluster's name. Default 'default'.",
    )
    token_ttl_seconds: int = Field(
        default=DEFAULT_TTL_SECONDS,
        alias="tokenTtlSeconds",
        ge=MIN_TTL_SECONDS,
        le=MAX_TTL_SECONDS,
        description="Token lifetime, exp - iat, in seconds. Default 3600 (1 h); 300..86400.",
    )
    signing_key_file: Path = Field(
        alias="signingKeyFile",
        description="PEM (PKCS#8) Ed25519 private key that signs tokens. Required.",
    )
    tls_cert_file: Path = Field(
        alias="tlsCertFile",
        description="PEM serving certificate chain (leaf first) for the HTTPS listener. Required.",
    )
    tls_key_file: Path = Field(
        alias="tlsKeyFile", description="PEM private key of the serving certificate. Required."
    )
    host: str = Field(
        default="0.0.0.0",  # noqa: S104 - the API server reaches the pod through its Service.
        min_length=1,
        description="Listen address. Default 0.0.0.0 (all interfaces).",
    )
    port: int = Field(
        default=8443,
        ge=0,
        le=65535,
        description="HTTPS listen port. Default 8443; 0 picks a free port (tests).",
    )
    max_request_bytes: int = Field(
        default=DEFAULT_MAX_REQUEST_BYTES,
        alias="maxRequestBytes",
        ge=64 * 1024,
        description="Largest accepted request body in bytes; larger gets 413. Default 3 MiB "
        "(the API server's own request limit).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment, then the YAML file (no dotenv/secrets)."""
        path = _config_file.get()
        if path is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, InitSettingsSource(settings_cls, _read_yaml(path)))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: cannot read: {_os_reason(exc)}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    return data


def _os_reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


def _env_name(loc: tuple[int | str, ...]) -> str:
    names: list[str] = []
    model: Any = WebhookSettings
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not isinstance(part, str) or fields is None:
            break
        name = next((n for n, f in fields.items() if part in (n, f.alias)), part)
        names.append(name.upper())
        model = fields[name].annotation if name in fields else None
    return ENV_PREFIX + "__".join(names)


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = err["loc"]
        field = ".".join(str(p) for p in loc) or "settings"
        if err["type"] == "extra_forbidden":
            lines.append(f"{field}: unknown key")
            continue
        env = f" (env {_env_name(loc)})" if loc and isinstance(loc[0], str) else ""
        lines.append(f"{field}{env}: {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(*, config_file: Path | None = None) -> WebhookSettings:
    """Build and validate the settings from the environment and the optional YAML file.

    Args:
        config_file: YAML file (``--config``); when None, ``AGENT_BOOTSTRAP_WEBHOOK_CONFIG``
            names it, if set.

    Returns:
        The frozen settings.

    Raises:
        ConfigError: unreadable or invalid YAML, unknown keys, missing required fields or
            values out of bounds; the message names each field (file key and env variable),
            never its value.
    """
    named = os.environ.get(CONFIG_ENV)
    path = config_file or (Path(named) if named else None)
    token = _config_file.set(path)
    try:
        return WebhookSettings()  # required fields come from the sources
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    finally:
        _config_file.reset(token)
