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
       signingKeyFile: /etc/agent-bootstrap/signing/signing.key
       tlsCertFile: /etc/agent-bootstrap/tls/tls.crt     # or tlsPemFile: .../webhook-tls.pem
       tlsKeyFile: /etc/agent-bootstrap/tls/tls.key
       injectEnv: {enabled: true, containers: [k8s-agent], variable: AGENT_API_KEY}
       metricsPort: 9090
       workers: 1

3. the defaults below.

Only prefixed variables are read: a plain ``HOST`` or ``PORT`` in the environment never
changes the webhook. Unknown keys in the file are an error, not ignored: a misspelt
``namespaces`` must not silently trust nothing. :func:`load_settings` turns every validation
failure into one :class:`ConfigError` that names each field where it was set, never its value:
the file key and the file when the value came from the file, the file key and the environment
variable when it came from the environment, both ways to set it when it is missing
(:class:`bootstrap_token.config_file.Origins`). Errors found later, when a file the settings
name is opened, say the same through :meth:`WebhookSettings.describe_field`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    SettingsConfigDict,
)

from bootstrap_token import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, MIN_TTL_SECONDS, TrustPolicy
from bootstrap_token import config_file as _cf
from bootstrap_token.config_file import (
    GuardedServiceSettings,
    ListenPort,
)
from bootstrap_token.names import is_dns1123_label, is_dns1123_subdomain
from bootstrap_token.policy import in_cluster_namespace

ENV_PREFIX = "AGENT_BOOTSTRAP_WEBHOOK_"
#: Environment variable naming the YAML config file (``--config`` wins over it).
CONFIG_ENV = ENV_PREFIX + "CONFIG"

#: etcd's default request limit, 1.5 MiB (etcd documentation, "System limits": "By default, the
#: maximum size of any request is 1.5 MiB", ``--max-request-bytes``): the largest object the API
#: server can store (webhook.stamp uses the same figure); a larger pod fails with "etcdserver:
#: request is too large" whatever a webhook answers.
MAX_OBJECT_BYTES = 1536 * 1024

#: Bytes Go's ``encoding/json`` may write for one byte of the object. The API server writes the
#: AdmissionReview with it (k8s.io/apimachinery's JSON serializer, a ``json.Encoder`` with
#: ``SetEscapeHTML`` left on), which turns each ``&``, ``<`` and ``>`` into ``\u0026``,
#: ``\u003c``, ``\u003e`` (Go ``encoding/json``, ``HTMLEscape``), and a control byte or an
#: invalid UTF-8 byte into ``\u00XX`` / ``\ufffd``: six bytes for one, the worst case.
GO_JSON_ESCAPE_FACTOR = 6

#: Room for the AdmissionReview around the object (kind, resource, names, operation, options,
#: ``userInfo`` with its groups and extra): a few KiB in practice; 1 MiB makes the total round.
#: ``oldObject`` is not counted: the webhook is registered for CREATE only (the chart's and the
#: kustomize base's ``rules``), where it is null. A registration that adds UPDATE needs twice the
#: object; raise ``maxRequestBytes`` with it.
REVIEW_ENVELOPE_BYTES = 1024 * 1024

#: 10 MiB (10485760) = 1.5 MiB x 6 + 1 MiB: the largest review the API server can send for a
#: storable pod, every byte of its object escaped. Under it a valid pod (576 KB of ``args`` full
#: of ``&`` is a 3.4 MB review) is answered, not refused with 413 and admitted unchanged. What
#: bounds memory is not this cap but ``maxInFlightBodyBytes`` (bodies held at once) and
#: ``maxUnescapedRequestBytes`` (what one body may decode to).
DEFAULT_MAX_REQUEST_BYTES = MAX_OBJECT_BYTES * GO_JSON_ESCAPE_FACTOR + REVIEW_ENVELOPE_BYTES

#: 3 MiB (3145728): the API server's own cap on a request body (k8s.io/apiserver
#: ``Config.MaxRequestBodyBytes``), the object's way in. A review counted with every ``\u00XX``
#: escape as the one byte it stands for holds the object as it came in (plus defaults, the
#: envelope and, for a storable pod, at most 1.5 MiB in etcd); a 1.5 MiB pod fits with room.
#: Escapes decode to one character each, so this bounds what parsing one body can build:
#: JSON of nothing but structure (``[{},{},...]``) decodes to about 30 times its size in Python
#: objects (10 MiB of it: about 300 MB; 3 MiB: about 90 MB, within the chart's 256 MiB limit).
DEFAULT_MAX_UNESCAPED_REQUEST_BYTES = 3 * 1024 * 1024

#: Default seconds a body that does not fit ``maxInFlightBodyBytes`` waits for room before 503;
#: capped per request at half the API server's deadline for the call (its ``timeout`` query
#: parameter, ``timeoutSeconds`` of the registration), so the answer still arrives in time.
DEFAULT_BODY_BUDGET_WAIT_SECONDS = 2.0

#: Default seconds between two looks at the key and certificate files. Kubernetes propagates a
#: changed Secret to its volume within the kubelet sync period (about a minute), so polling every
#: few seconds adds little delay and costs one stat() per file.
DEFAULT_RELOAD_INTERVAL_SECONDS = 5.0

#: Default bound on finishing in-flight reviews after SIGTERM: the default (and usual)
#: ``timeoutSeconds`` of a webhook registration. The API server stops waiting for an answer after
#: that, so waiting longer would only delay the exit.
DEFAULT_SHUTDOWN_GRACE_SECONDS = 10.0

#: Default seconds between SIGTERM and closing the listener, while ``/readyz`` already answers 503:
#: endpoints controllers and kube-proxy need a moment to take the pod out of the Service, and a
#: review sent in that window to a closed port would leave its pod unstamped.
DEFAULT_SHUTDOWN_DELAY_SECONDS = 2.0

# Kubernetes qualified name (annotation key): optional DNS-1123 subdomain prefix and "/", then a
# name of at most 63 characters (apimachinery validation.IsQualifiedName).
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# A C identifier: what an env var name must be for $(VAR) expansion and most shells.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_annotation_key(key: str) -> bool:
    """True when ``key`` is a valid Kubernetes annotation key (``[prefix/]name``).

    Rule source: Kubernetes "Annotations", "Syntax and character set" (name at most 63
    characters of ``[A-Za-z0-9-_.]`` starting and ending alphanumeric; prefix a DNS subdomain of
    at most 253 characters).
    """
    prefix, sep, name = key.rpartition("/")
    if "/" in prefix or (sep and not prefix):
        return False
    if prefix and not is_dns1123_subdomain(prefix):
        return False
    return 0 < len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


class EventLoop(StrEnum):
    """Which asyncio event loop serves requests."""

    AUTO = "auto"  # uvloop when it is installed, else asyncio's own
    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


class InjectEnv(BaseModel):
    """``injectEnv``: point an env var of named containers at the token annotation.

    For agents that cannot read a file or an annotation (StreamSpace's k8s-agent sends
    ``AGENT_API_KEY`` as ``X-Agent-API-Key``), the patch sets ``variable`` in each container
    (or init container) named in ``containers`` to ``valueFrom.fieldRef.fieldPath:
    metadata.annotations['<annotationKey>']`` (Kubernetes "Expose Pod Information to Containers
    Through Environment Variables"), replacing any definition the pod came with.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=False, description="Off by default.")
    containers: tuple[str, ...] = Field(
        default=("k8s-agent",),
        min_length=1,
        description="Container names (containers and initContainers). Default ['k8s-agent'].",
    )
    variable: str = Field(
        default="AGENT_API_KEY",
        description="The env var to set. Default AGENT_API_KEY.",
    )

    @field_validator("containers")
    @classmethod
    def _container_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not is_dns1123_label(name):  # a container name
                raise ValueError(f"{name!r} is not a container name (DNS-1123 label)")
        return value

    @field_validator("variable")
    @classmethod
    def _variable_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError("must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        return value


class AgentProxy(BaseModel):
    """``agentProxy``: inject the agent proxy sidecar into stamped agent pods that opt in with
    the annotation ``agent-bootstrap.io/agent-proxy: "true"`` (webhook.sidecar), and point
    their ``urlVariable`` at it. For agents that cannot present a client certificate
    themselves (StreamSpace's k8s-agent): docs/agent-certificates.md.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )

    enabled: bool = Field(default=False, description="Off by default.")
    image: str | None = Field(
        default=None,
        min_length=1,
        description="This project's image (it holds agent-bootstrap-agent-proxy). Required "
        "when enabled.",
    )
    upstream_url: str | None = Field(
        default=None,
        alias="upstreamUrl",
        pattern=r"^https://[^\s/]+(/.*)?$",
        description="The approver as agent pods reach it, https://... Required when enabled.",
    )
    containers: tuple[str, ...] = Field(
        default=("k8s-agent",),
        min_length=1,
        description="Agent containers pointed at the proxy. Default ['k8s-agent'].",
    )
    url_variable: str = Field(
        default="CONTROL_PLANE_URL",
        alias="urlVariable",
        description="Their variable naming the control plane. Default CONTROL_PLANE_URL.",
    )
    ca_config_map: str = Field(
        default="agent-bootstrap-ca",
        alias="caConfigMap",
        description="ConfigMap in the agents' namespace with the approver's CA bundle. Default "
        "agent-bootstrap-ca.",
    )
    ca_key: str = Field(
        default="ca.crt",
        alias="caKey",
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Its key. Default ca.crt.",
    )
    port: ListenPort = Field(
        default=8480, description="The proxy's port on the pod's loopback. Default 8480."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", alias="imagePullPolicy", description="Default IfNotPresent."
    )

    @field_validator("containers")
    @classmethod
    def _container_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return InjectEnv._container_names(value)

    @field_validator("url_variable")
    @classmethod
    def _variable_name(cls, value: str) -> str:
        return InjectEnv._variable_name(value)

    @field_validator("ca_config_map")
    @classmethod
    def _config_map_name(cls, value: str) -> str:
        if not is_dns1123_subdomain(value):
            raise ValueError("must be a ConfigMap name (DNS-1123 subdomain)")
        return value

    @model_validator(mode="after")
    def _required(self) -> Self:
        if self.enabled and (self.image is None or self.upstream_url is None):
            raise ValueError(
                "agentProxy.image and agentProxy.upstreamUrl are required when "
                "agentProxy.enabled is true"
            )
        return self


class ConfigError(ValueError):
    """The configuration cannot be used. The message names the field where it was set (file
    key and file, or environment variable)."""


class WebhookSettings(GuardedServiceSettings):
    """Everything the webhook needs at start. Immutable; validated once at start.

    ======================  ==============================  =======  ==========================
    file key                env (after the prefix)          unit     default
    ======================  ==============================  =======  ==========================
    trust                   TRUST, TRUST__NAMESPACES...     -        nothing trusted; agent
                                                                     selector app.kubernetes.io/
                                                                     component=k8s-agent
    annotationKey           ANNOTATION_KEY                  -        agents.streamspace.io/
                                                                     bootstrap-token
    issuer                  ISSUER                          -        agent-bootstrap-webhook
    audience                AUDIENCE                        -        agent-approver
    cluster                 CLUSTER                         -        default
    tokenTtlSeconds         TOKEN_TTL_SECONDS               seconds  3600 (bounds 300..86400)
    injectEnv               INJECT_ENV, INJECT_ENV__...     -        disabled; [k8s-agent],
                                                                     AGENT_API_KEY
    agentProxy              AGENT_PROXY, AGENT_PROXY__...   -        disabled; [k8s-agent],
                                                                     CONTROL_PLANE_URL, 8480
    signingKeyFile          SIGNING_KEY_FILE                path     required
    tlsCertFile             TLS_CERT_FILE                   path     required without
                                                                     tlsPemFile
    tlsKeyFile              TLS_KEY_FILE                    path     required without
                                                                     tlsPemFile
    tlsPemFile              TLS_PEM_FILE                    path     unset (certificate chain +
                                                                     key in one file)
    tlsClientCaFile         TLS_CLIENT_CA_FILE              path     unset (no client
                                                                     certificate required)
    reloadIntervalSeconds   RELOAD_INTERVAL_SECONDS         seconds  5 (0 = never re-read)
    host                    HOST                            -        0.0.0.0
    port                    PORT                            -        8443 (1..65535)
    maxRequestBytes         MAX_REQUEST_BYTES               bytes    10 MiB (10485760)
    maxUnescapedRequestBytes  MAX_UNESCAPED_REQUEST_BYTES   bytes    3 MiB (3145728)
    bodyTimeoutSeconds      BODY_TIMEOUT_SECONDS            seconds  10 (1..60)
    headTimeoutSeconds      HEAD_TIMEOUT_SECONDS            seconds  10 (1..60)
    maxIncompleteConnections  MAX_INCOMPLETE_CONNECTIONS    -        256 (1..65536)
    maxInFlightBodyBytes    MAX_IN_FLIGHT_BODY_BYTES        bytes    32 MiB (33554432)
    bodyBudgetWaitSeconds   BODY_BUDGET_WAIT_SECONDS        seconds  2 (0..30; 0 = no wait)
    metricsHost             METRICS_HOST                    -        0.0.0.0
    metricsPort             METRICS_PORT                    -        9090 (0 = no metrics)
    workers                 WORKERS                         -        1 (processes on the port)
    shutdownDelaySeconds    SHUTDOWN_DELAY_SECONDS          seconds  2
    shutdownGraceSeconds    SHUTDOWN_GRACE_SECONDS          seconds  10
    eventLoop               EVENT_LOOP                      -        auto (uvloop if installed)
    ======================  ==============================  =======  ==========================

    Pod ``terminationGracePeriodSeconds`` (default 30) must exceed ``shutdownDelaySeconds +
    shutdownGraceSeconds`` (default 12), or the kubelet kills the process mid-drain.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    trust: TrustPolicy = Field(
        default_factory=TrustPolicy,
        description="Trusted namespaces, service accounts and agent pod selector. Default: "
        "no namespace trusted (nothing is stamped), selector "
        "app.kubernetes.io/component=k8s-agent.",
    )
    release_namespace: str | None = Field(
        default_factory=in_cluster_namespace,
        alias="releaseNamespace",
        description="The namespace agent-bootstrap runs in, which trust.namespaces may not list "
        "(bootstrap_token.policy); the chart and the kustomize base set it from the downward "
        "API (metadata.namespace). Default: the pod's own namespace from its service account "
        "volume when one is mounted; none outside a cluster.",
    )
    annotation_key: str = Field(
        default="agents.streamspace.io/bootstrap-token",
        alias="annotationKey",
        min_length=1,
        max_length=317,  # 253 (DNS prefix) + "/" + 63 (name): Kubernetes annotation key limit.
        description="Pod annotation that carries the token (a valid annotation key, so that "
        "the downward API can name it). Default agents.streamspace.io/bootstrap-token.",
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
    inject_env: InjectEnv = Field(
        default_factory=InjectEnv,
        alias="injectEnv",
        description="Point an env var of named containers at the token annotation. Disabled.",
    )
    agent_proxy: AgentProxy = Field(
        default_factory=AgentProxy,
        alias="agentProxy",
        description="Inject the agent proxy sidecar into stamped pods that opt in. Disabled.",
    )
    signing_key_file: Path = Field(
        alias="signingKeyFile",
        description="PEM (PKCS#8) Ed25519 private key that signs tokens; re-read when it "
        "changes. Required (it may appear after start: the webhook is not ready until then).",
    )
    tls_cert_file: Path | None = Field(
        default=None,
        alias="tlsCertFile",
        description="PEM serving certificate chain (leaf first) for the HTTPS listener. "
        "Required unless tlsPemFile is set.",
    )
    tls_key_file: Path | None = Field(
        default=None,
        alias="tlsKeyFile",
        description="PEM private key of the serving certificate. Required unless tlsPemFile "
        "is set.",
    )
    tls_pem_file: Path | None = Field(
        default=None,
        alias="tlsPemFile",
        description="Certificate chain and key in one PEM file (certs-tooling's "
        "webhook-tls.pem, replaced by one rename): the pair can never be seen half-updated. "
        "Replaces tlsCertFile/tlsKeyFile.",
    )
    tls_client_ca_file: Path | None = Field(
        default=None,
        alias="tlsClientCaFile",
        description="PEM bundle of the CAs that sign the API server's client certificate "
        "(Kubernetes: 'Authenticate apiservers'). When set, every TLS handshake must present "
        "a client certificate chaining to them, so only the API server can ask for a token. "
        "Re-read with the serving certificate. Default: unset (any TLS client).",
    )
    reload_interval_seconds: float = Field(
        default=DEFAULT_RELOAD_INTERVAL_SECONDS,
        alias="reloadIntervalSeconds",
        ge=0,
        le=3600,
        description="Seconds between two looks at the signing key and TLS files (by content, "
        "inode and mtime of the resolved path, which follows Secret volume symlink swaps). "
        "Default 5; 0 never re-reads them.",
    )
    host: str = Field(
        default="0.0.0.0",  # noqa: S104 - the API server reaches the pod through its Service.
        min_length=1,
        description="Listen address. Default 0.0.0.0 (all interfaces).",
    )
    port: ListenPort = Field(default=8443, description="HTTPS listen port, 1..65535. Default 8443.")
    max_request_bytes: int = Field(
        default=DEFAULT_MAX_REQUEST_BYTES,
        alias="maxRequestBytes",
        ge=64 * 1024,
        description="Largest accepted request body in bytes; larger gets 413. Default 10 MiB: "
        "a 1.5 MiB pod (etcd's limit) with every byte escaped by Go's JSON encoder (6 bytes "
        "each), plus 1 MiB for the review around it.",
    )
    max_unescaped_request_bytes: int = Field(
        default=DEFAULT_MAX_UNESCAPED_REQUEST_BYTES,
        alias="maxUnescapedRequestBytes",
        ge=64 * 1024,
        description="Largest accepted request body in bytes with each \\u00XX escape counted "
        "as one byte (checked only on bodies larger than this); larger gets 413. Bounds what "
        "parsing one body can build. Default 3 MiB (the API server's own request limit).",
    )
    body_timeout_seconds: float = Field(
        default=10.0,
        alias="bodyTimeoutSeconds",
        ge=1,
        le=60,
        description="Seconds a request body may take to arrive once its headers are in; "
        "slower gets 408 and the connection closed. Default 10 (the API server sends a "
        "review in one go; its webhook timeout is at most 30 s).",
    )
    max_in_flight_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        alias="maxInFlightBodyBytes",
        ge=64 * 1024,
        description="Bytes of request bodies held at once, from reading to the answer "
        "(declared lengths; a chunked body counts as maxRequestBytes); a body that would exceed "
        "it waits for room (bodyBudgetWaitSeconds), then gets 503 with Retry-After. Bounds the "
        "memory slow or hostile clients can hold. At least maxRequestBytes. Default 32 MiB.",
    )
    body_budget_wait_seconds: float = Field(
        default=DEFAULT_BODY_BUDGET_WAIT_SECONDS,
        alias="bodyBudgetWaitSeconds",
        ge=0,
        le=30,
        description="Seconds a body that does not fit maxInFlightBodyBytes waits for room, in "
        "order of arrival, before 503; at most half the API server's deadline for the call "
        "(its timeout query parameter). Default 2; 0 refuses at once.",
    )
    metrics_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - Prometheus scrapes the pod IP.
        alias="metricsHost",
        min_length=1,
        description="Listen address of the plain-HTTP metrics port. Default 0.0.0.0.",
    )
    metrics_port: int = Field(
        default=9090,
        alias="metricsPort",
        ge=0,
        le=65535,
        description="Plain-HTTP port serving GET /metrics (Prometheus text format). "
        "Default 9090; 0 turns the metrics listener off.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes serving the HTTPS port together (SO_REUSEPORT; the kernel spreads "
        "connections). Default 1; more than the CPUs the pod may use only adds contention.",
    )
    shutdown_delay_seconds: float = Field(
        default=DEFAULT_SHUTDOWN_DELAY_SECONDS,
        alias="shutdownDelaySeconds",
        ge=0,
        le=60,
        description="After SIGTERM, seconds to keep serving with /readyz at 503 before the "
        "listener closes, so the Service stops routing here first. Default 2.",
    )
    shutdown_grace_seconds: float = Field(
        default=DEFAULT_SHUTDOWN_GRACE_SECONDS,
        alias="shutdownGraceSeconds",
        ge=0,
        le=300,
        description="After the listener closes, seconds to let in-flight reviews finish before "
        "they are cancelled. Default 10 (the webhook registration's usual timeoutSeconds).",
    )
    event_loop: EventLoop = Field(
        default=EventLoop.AUTO,
        alias="eventLoop",
        description="'auto' (uvloop when installed), 'asyncio' or 'uvloop'. Default auto.",
    )

    @field_validator("annotation_key")
    @classmethod
    def _annotation_key(cls, value: str) -> str:
        if not is_annotation_key(value):
            raise ValueError("must be a Kubernetes annotation key ([prefix/]name)")
        return value

    @model_validator(mode="after")
    def _release_namespace_not_trusted(self) -> Self:
        if (reason := self.trust.release_namespace_error(self.release_namespace)) is not None:
            raise ValueError(reason)
        return self

    @model_validator(mode="after")
    def _env_variables_apart(self) -> Self:
        proxy, inject = self.agent_proxy, self.inject_env
        if (
            proxy.enabled
            and inject.enabled
            and proxy.url_variable == inject.variable
            and set(proxy.containers) & set(inject.containers)
        ):
            raise ValueError(
                "agentProxy.urlVariable and injectEnv.variable name the same variable of the "
                "same containers: the proxy's URL would take the token's place"
            )
        return self

    @model_validator(mode="after")
    def _body_budget(self) -> Self:
        if self.max_in_flight_body_bytes < self.max_request_bytes:
            raise ValueError("maxInFlightBodyBytes must be at least maxRequestBytes")
        return self

    @model_validator(mode="after")
    def _tls_files(self) -> Self:
        pair = (self.tls_cert_file is not None, self.tls_key_file is not None)
        if self.tls_pem_file is not None:
            if any(pair):
                raise ValueError("set either tlsPemFile or tlsCertFile + tlsKeyFile, not both")
        elif pair != (True, True):
            raise ValueError("tlsCertFile and tlsKeyFile (or tlsPemFile) are required")
        return self


def load_settings(*, config_file: Path | None = None) -> WebhookSettings:
    """Build and validate the settings from the environment and the optional YAML file.

    Args:
        config_file: YAML file (``--config``); when None, ``AGENT_BOOTSTRAP_WEBHOOK_CONFIG``
            names it, if set.

    Returns:
        The frozen settings.

    Raises:
        ConfigError: unreadable or invalid YAML, unknown keys, missing required fields, values
            out of bounds or inconsistent (half a TLS pair), a variable holding invalid JSON;
            the message names each field where it was set (the file key and the file, or the
            environment variable), never its value.
    """
    return _cf.load_service_settings(
        WebhookSettings, config_file=config_file, config_env=CONFIG_ENV, error=ConfigError
    )
