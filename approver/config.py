"""Approver settings: environment variables over an optional YAML file over defaults.

Sources, highest precedence first:

1. environment: ``AGENT_BOOTSTRAP_APPROVER_<FIELD>`` with the snake_case field name, nested
   fields joined with ``__``, e.g. ``AGENT_BOOTSTRAP_APPROVER_AUTO_APPROVE__ENABLED=true``,
   ``AGENT_BOOTSTRAP_APPROVER_TOKEN__JWKS_FILE=/etc/agent-bootstrap/jwks/jwks.json``,
   ``AGENT_BOOTSTRAP_APPROVER_TRUST__NAMESPACES='["streamspace"]'`` (lists and objects as JSON);
2. the YAML file named by ``--config`` or ``AGENT_BOOTSTRAP_APPROVER_CONFIG``, camelCase keys::

       autoApprove:
         enabled: true            # default false: every agent waits for an administrator
         maxActivePerNamespace: 50   # optional quota (default none); beyond: quota_exceeded
         maxActivePerOwner: 20       # optional quota per controller owner (default none)
       kubernetes:                # read the live pod at registration, watch pods for deletions
         enabled: false
         kubeconfig: null         # default: the in-cluster configuration
         tokenAnnotation: agents.streamspace.io/bootstrap-token
         requestTimeoutSeconds: 5
         watch: true
         watchTimeoutSeconds: 300
         resyncSeconds: 600
       pendingTtlSeconds: 86400   # pending registrations are marked pending_expired after this
       sweepIntervalSeconds: 300
       trust:                     # the same shape the webhook reads (bootstrap_token.TrustPolicy)
         namespaces: [streamspace]
         serviceAccounts: ["streamspace:streamspace-agent"]
       token:
         issuer: agent-bootstrap-webhook
         audience: agent-approver
         leewaySeconds: 30
         jwksFile: /etc/agent-bootstrap/jwks/jwks.json
       agentIdPrefix: k8s-prod-cluster
       databaseUrl: postgresql+asyncpg://approver@postgres:5432/agent_bootstrap
       adminTokensFile: /etc/agent-bootstrap/admin/tokens      # re-read when it changes
       reviewTokensFile: /etc/agent-bootstrap/review/tokens    # may call /api/v1/agents/review
       databasePoolSize: 10
       writeBatchSize: 64         # group commit under load; 1: one transaction per decision
       writeConcurrency: 1        # group-commit transactions in flight (PostgreSQL)
       eventLoop: auto            # uvloop when installed
       tlsCertFile: /etc/agent-bootstrap/tls/tls.crt
       tlsKeyFile: /etc/agent-bootstrap/tls/tls.key
       host: 0.0.0.0
       port: 8444
       retryAfterSeconds: 5
       apiKeys:                   # step 3 (approver.api_keys.settings)
         enabled: false
       controlPlane:              # where approvals take effect (approver.connectors.settings)
         type: none               # or streamspace, with controlPlane.streamspace
       serviceAccountTokens:      # step 4 (approver.service_accounts.settings)
         enabled: false
       agentCertificates:         # client certificates for agents (approver.agent_certs.settings)
         enabled: false
       pendingLimits:             # registrations without a credential (approver.pending_limits)
         perSourcePerSecond: 1

3. the defaults below.

Only prefixed variables are read. Unknown keys in the file are an error, not ignored: a
misspelt ``namespaces`` must not silently trust nothing. :func:`load_settings` turns every
validation failure into one :class:`ConfigError` that names each field where it was set, never
its value: the file key and the file when the value came from the file, the file key and the
environment variable when it came from the environment, both ways to set it when it is
missing (:class:`bootstrap_token.config_file.Origins`). Errors found later, when a file the
settings name is opened, say the same through :meth:`ApproverSettings.describe_field`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    model_validator,
)
from pydantic_settings import (
    SettingsConfigDict,
)

from approver.agent_certs.settings import AgentCertificateSettings
from approver.api_keys.settings import ApiKeySettings
from approver.connectors.settings import ControlPlaneSettings
from approver.pending_limits.settings import PendingLimitSettings
from approver.service_accounts.settings import ServiceAccountSettings
from bootstrap_token import TrustPolicy
from bootstrap_token import config_file as _cf
from bootstrap_token.config_file import (
    GuardedServiceSettings,
    ListenPort,
)
from bootstrap_token.policy import in_cluster_namespace

ENV_PREFIX = "AGENT_BOOTSTRAP_APPROVER_"
#: Environment variable naming the YAML config file (``--config`` wins over it).
CONFIG_ENV = ENV_PREFIX + "CONFIG"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./agent-bootstrap.db"


class ConfigError(ValueError):
    """The configuration cannot be used. The message names the field where it was set (file
    key and file, or environment variable)."""


class _Section(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )


class AutoApproveSettings(_Section):
    """``autoApprove``: whether a valid bootstrap token approves an agent at once."""

    enabled: bool = Field(
        default=False,
        description="Default false: every agent is pending until an administrator approves "
        "it, exactly the behaviour before bootstrap tokens. True: a verified, trusted, bound "
        "bootstrap token approves (approval method 'namespace'); needs token.jwksFile.",
    )
    max_active_per_namespace: int | None = Field(
        default=None,
        alias="maxActivePerNamespace",
        ge=1,
        description="At most this many active auto-approved agents per namespace; beyond it "
        "agents go pending with reason quota_exceeded. Default: no limit.",
    )
    max_active_per_owner: int | None = Field(
        default=None,
        alias="maxActivePerOwner",
        ge=1,
        description="At most this many active auto-approved agents per controller owner "
        "(the token's owner UID, e.g. one ReplicaSet). Default: no limit.",
    )


#: The annotation the webhook stamps the bootstrap token into (its default).
DEFAULT_TOKEN_ANNOTATION = "agents.streamspace.io/bootstrap-token"  # noqa: S105 - a key name


class KubernetesSettings(_Section):
    """``kubernetes``: Kubernetes API access (kubernetes-asyncio)."""

    enabled: bool = Field(
        default=False,
        description="Default false. True: registrations with a bootstrap token read the live "
        "pod (exists, not terminating, carries this token, controller owner as in the token; "
        "its UID is recorded), and the agent pods of trusted namespaces are watched so a "
        "deleted pod makes its agent inactive. Needs get/list/watch on pods.",
    )
    kubeconfig: FilePath | None = Field(
        default=None,
        description="A kubeconfig file (its current context). Default: none, the in-cluster "
        "configuration (the pod's service account).",
    )
    token_annotation: str = Field(
        default=DEFAULT_TOKEN_ANNOTATION,
        alias="tokenAnnotation",
        min_length=1,
        max_length=317,
        description="The pod annotation holding the bootstrap token (the webhook's "
        f"annotation). Default {DEFAULT_TOKEN_ANNOTATION}.",
    )
    request_timeout_seconds: float = Field(
        default=5.0,
        alias="requestTimeoutSeconds",
        gt=0,
        le=60,
        description="Timeout of one pod read or list, in seconds. Default 5.",
    )
    watch: bool = Field(
        default=True,
        description="Watch agent pods of trusted namespaces (needs enabled). Default true.",
    )
    bind_source_address: bool = Field(
        default=True,
        alias="bindSourceAddress",
        description="Default true: a bootstrap token approves only when the request comes "
        "from its pod's address (status.podIP; with enabled), so a token read from the "
        "annotation by anyone who may get pods is useless elsewhere; and a manually approved "
        "agent's key goes only to the address its approved registration came from. Needs the "
        "approver to see agent addresses (traffic inside the cluster); false behind a proxy "
        "that rewrites them.",
    )
    resync_seconds: float = Field(
        default=600.0,
        alias="resyncSeconds",
        ge=30,
        le=86400,
        description="List the agent pods again at least this often (an informer's resync), "
        "in seconds, so a deletion that raced a registration is caught. Default 600.",
    )
    watch_timeout_seconds: int = Field(
        default=300,
        alias="watchTimeoutSeconds",
        ge=10,
        le=3600,
        description="timeoutSeconds of one watch request; the watch then resumes from the last "
        "resourceVersion. Default 300.",
    )


class EventLoop(StrEnum):
    """``eventLoop``: which asyncio event loop serves."""

    AUTO = "auto"  #: uvloop when it is installed, else asyncio's own
    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


class TokenSettings(_Section):
    """``token``: how bootstrap tokens are verified (must match the webhook's settings)."""

    issuer: str = Field(
        default="agent-bootstrap-webhook", min_length=1, description="Required 'iss' claim."
    )
    audience: str = Field(
        default="agent-approver", min_length=1, description="Required 'aud' claim."
    )
    leeway_seconds: int = Field(
        default=30,
        alias="leewaySeconds",
        ge=0,
        le=300,
        description="Clock skew tolerated on 'exp' and 'nbf', in seconds. Default 30; 0..300.",
    )
    clusters: frozenset[str] = Field(
        default=frozenset({"default"}),
        min_length=1,
        description="Accepted 'cluster' claims: the webhook's 'cluster' setting, or each "
        "cluster's when one approver serves several (docs/operations.md, 'Several clusters'). "
        "Default ['default'], the webhook's default.",
    )
    jwks_file: FilePath | None = Field(
        default=None,
        alias="jwksFile",
        description="The webhook's public keys: a JWKS (JSON) or PEM public keys. Required when "
        "autoApprove.enabled. Default: none.",
    )


class ApproverSettings(GuardedServiceSettings):
    """Everything the approver needs at start. Immutable; validated once at start."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    auto_approve: AutoApproveSettings = Field(
        default_factory=AutoApproveSettings,
        alias="autoApprove",
        description="Auto-approval switch. Default: disabled (every agent pending).",
    )
    trust: TrustPolicy = Field(
        default_factory=TrustPolicy,
        description="Trusted namespaces and service accounts, re-checked when a token is "
        "verified (same shape as the webhook's). Default: nothing trusted.",
    )
    token: TokenSettings = Field(
        default_factory=TokenSettings, description="Token verification settings."
    )
    release_namespace: str | None = Field(
        default_factory=in_cluster_namespace,
        alias="releaseNamespace",
        description="The namespace agent-bootstrap runs in, which trust.namespaces may not list "
        "(bootstrap_token.policy); the chart and the kustomize base set it from the downward "
        "API (metadata.namespace). Default: the pod's own namespace from its service account "
        "volume when one is mounted; none outside a cluster.",
    )
    agent_id_prefix: str | None = Field(
        default=None,
        alias="agentIdPrefix",
        min_length=1,
        max_length=200,
        description="StreamSpace builds AGENT_ID=$(AGENT_ID_PREFIX)-$(POD_NAME); with this set, "
        "the pod name is the agent id minus '<prefix>-' when metadata.podName is absent. "
        "Default: none (the agent id is the pod name).",
    )
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        alias="databaseUrl",
        min_length=1,
        description="SQLAlchemy URL: sqlite+aiosqlite:///<path> (one replica) or "
        "postgresql+asyncpg://user@host:5432/db (several replicas). Default: "
        f"{DEFAULT_DATABASE_URL}.",
    )
    admin_tokens_file: FilePath | None = Field(
        default=None,
        alias="adminTokensFile",
        description="Admin API bearer tokens, one per line, optionally 'name:token'; blank "
        "lines and '#' comments ignored; re-read when the file changes. Default: none (the "
        "admin API answers 401).",
    )
    review_tokens_file: FilePath | None = Field(
        default=None,
        alias="reviewTokensFile",
        description="Bearer tokens (same format) that may call POST /api/v1/agents/review and "
        "nothing else, for a control plane; admin tokens may call it too. Default: none.",
    )
    kubernetes: KubernetesSettings = Field(
        default_factory=KubernetesSettings,
        description="Kubernetes API access. Default: disabled.",
    )
    api_keys: ApiKeySettings = Field(
        default_factory=ApiKeySettings,
        alias="apiKeys",
        description="The API-key approval path (step 3). Default: disabled.",
    )
    control_plane: ControlPlaneSettings = Field(
        default_factory=ControlPlaneSettings,
        alias="controlPlane",
        description="Where approvals take effect: none, or StreamSpace through its own API "
        "(approver.connectors.settings).",
    )
    service_account_tokens: ServiceAccountSettings = Field(
        default_factory=ServiceAccountSettings,
        alias="serviceAccountTokens",
        description="The service-account token approval path (step 4). Default: disabled.",
    )
    agent_certificates: AgentCertificateSettings = Field(
        default_factory=AgentCertificateSettings,
        alias="agentCertificates",
        description="Client certificates for approved agents and their check at the gate "
        "(approver.agent_certs.settings). Default: disabled.",
    )
    pending_limits: PendingLimitSettings = Field(
        default_factory=PendingLimitSettings,
        alias="pendingLimits",
        description="Rates and a per-namespace cap on registrations that would create a "
        "pending record without a credential (approver.pending_limits.settings). Default: on.",
    )
    pending_ttl_seconds: int = Field(
        default=86400,
        alias="pendingTtlSeconds",
        ge=60,
        le=365 * 86400,
        description="A pending registration older than this is marked pending_expired (it "
        "stays, frozen until an administrator acts), in seconds. Default 86400 (24 h).",
    )
    sweep_interval_seconds: float = Field(
        default=300.0,
        alias="sweepIntervalSeconds",
        gt=0,
        le=86400,
        description="How often expired pending registrations are marked, in seconds. Default 300.",
    )
    database_pool_size: int = Field(
        default=10,
        alias="databasePoolSize",
        ge=1,
        le=100,
        description="Database connections per process (PostgreSQL; SQLite readers; SQLite "
        "writes always use one). Default 10.",
    )
    database_stall_seconds: float = Field(
        default=0.5,
        alias="databaseStallSeconds",
        ge=0.05,
        le=30,
        description="Seconds a registration's transaction (or /readyz) may wait while no "
        "database operation finishes before the database counts as hung: those waiting are "
        "answered 202 pending (registrations) or 503, new ones at once, /readyz is 503, and a "
        "probe every second restores service when it answers (approver.store.health). "
        "A minimum: the watchdog lengthens it to three typical operations of this database. "
        "Default 0.5.",
    )
    write_batch_size: int = Field(
        default=64,
        alias="writeBatchSize",
        ge=1,
        le=1000,
        description="Most registrations group-committed in one transaction under load (one "
        "commit, one fsync, one audit-chain lock for all); 1: one transaction each. "
        "Default 64.",
    )
    write_concurrency: int = Field(
        default=1,
        alias="writeConcurrency",
        ge=1,
        le=64,
        description="Most group-commit transactions in flight at once per process on "
        "PostgreSQL (SQLite has one writer: always 1). Default 1: with several replicas, "
        "more transactions in flight contend for the audit chain head; a single replica "
        "gains from 2.",
    )
    event_loop: EventLoop = Field(
        default=EventLoop.AUTO,
        alias="eventLoop",
        description="'auto' (uvloop when installed), 'asyncio' or 'uvloop'. Default auto.",
    )
    tls_cert_file: FilePath | None = Field(
        default=None,
        alias="tlsCertFile",
        description="PEM serving certificate chain (leaf first). Set together with tlsKeyFile; "
        "default none: plain HTTP (only behind a TLS-terminating proxy or mesh).",
    )
    tls_key_file: FilePath | None = Field(
        default=None,
        alias="tlsKeyFile",
        description="PEM private key of the serving certificate. Set together with tlsCertFile.",
    )
    tls_reload_interval_seconds: float = Field(
        default=10.0,
        alias="tlsReloadIntervalSeconds",
        ge=0,
        le=3600,
        description="Seconds between two looks at tlsCertFile and tlsKeyFile (inode, size and "
        "mtime of the resolved path, which follows Secret volume symlink swaps); a changed "
        "pair that loads and matches is served to new connections, one that does not is "
        "refused and the certificate in use stays. Default 10; 0 never re-reads them.",
    )
    metrics_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - Prometheus scrapes the pod IP.
        alias="metricsHost",
        min_length=1,
        description="Listen address of the plain-HTTP metrics port. Default 0.0.0.0.",
    )
    metrics_port: int = Field(
        default=9091,
        alias="metricsPort",
        ge=0,
        le=65535,
        description="Plain-HTTP port serving GET /metrics (Prometheus text format, "
        "approver.metrics). Default 9091; 0 turns the metrics listener off.",
    )
    host: str = Field(default="0.0.0.0", min_length=1, description="Listen address.")  # noqa: S104 - agents reach the pod through a Service.
    port: ListenPort = Field(default=8444, description="Listen port, 1..65535. Default 8444.")
    body_timeout_seconds: float = Field(
        default=10.0,
        alias="bodyTimeoutSeconds",
        ge=1,
        le=60,
        description="Seconds a request body may take to arrive once its head is in; slower gets "
        "408 and the connection closed. Default 10 (an agent sends its registration in one go).",
    )
    retry_after_seconds: int = Field(
        default=5,
        alias="retryAfterSeconds",
        ge=1,
        le=3600,
        description="Retry-After of a 503 answer (database unavailable), in seconds. Default 5.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (
            self.database_url.startswith("postgresql")
            and self.write_concurrency >= self.database_pool_size
        ):
            raise ValueError(
                f"writeConcurrency ({self.write_concurrency}) must be less than databasePoolSize "
                f"({self.database_pool_size}): each write transaction in flight holds a "
                "connection of the pool, and reads (registrations, the admin API, the sweeper) "
                "need at least one more"
            )
        if (reason := self.trust.release_namespace_error(self.release_namespace)) is not None:
            raise ValueError(reason)
        if self.auto_approve.enabled:
            if self.token.jwks_file is None:
                raise ValueError("token.jwksFile is required when autoApprove.enabled is true")
            if not self.trust.namespaces:
                raise ValueError(
                    "trust.namespaces must name at least one namespace when autoApprove.enabled "
                    "is true (otherwise no token could ever approve)"
                )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tlsCertFile and tlsKeyFile must be set together")
        if self.agent_certificates.enabled and self.tls_cert_file is None:
            raise ValueError(
                "agentCertificates.enabled requires tlsCertFile: the approver reads the agent's "
                "client certificate from its own TLS handshake"
            )
        if self.kubernetes.kubeconfig is not None and not self.uses_kubernetes_api:
            raise ValueError(
                "kubernetes.kubeconfig is set but neither kubernetes.enabled nor "
                "serviceAccountTokens (mode tokenreview) uses the Kubernetes API"
            )
        return self

    @property
    def uses_kubernetes_api(self) -> bool:
        """True when the approver needs a Kubernetes client: ``kubernetes.enabled`` (pod reads
        and watch) or ``serviceAccountTokens`` in mode ``tokenreview`` (TokenReview only; the
        client comes from ``kubernetes.kubeconfig`` or the in-cluster configuration)."""
        sa = self.service_account_tokens
        return self.kubernetes.enabled or (sa.enabled and sa.mode == "tokenreview")

    @property
    def tls_enabled(self) -> bool:
        """True when the listener serves HTTPS."""
        return self.tls_cert_file is not None


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable of a field location (file keys or field names), e.g.
    ``("token", "jwksFile")`` -> ``AGENT_BOOTSTRAP_APPROVER_TOKEN__JWKS_FILE``."""
    return _cf.env_name(ENV_PREFIX, ApproverSettings, loc)


def file_key(loc: tuple[int | str, ...]) -> str:
    """The dotted YAML key of a field location, e.g. ``("token", "jwks_file")`` ->
    ``token.jwksFile``."""
    return _cf.file_key(ApproverSettings, loc)


def load_settings(
    *, config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> ApproverSettings:
    """Build and validate the settings from the environment and the optional YAML file.

    Args:
        config_file: YAML file (``--config``); when None, ``AGENT_BOOTSTRAP_APPROVER_CONFIG``
            names it, if set.
        environ: where to look up ``AGENT_BOOTSTRAP_APPROVER_CONFIG`` (default ``os.environ``);
            the settings fields themselves are always read from ``os.environ``.

    Returns:
        The frozen settings.

    Raises:
        ConfigError: unreadable or invalid YAML, unknown keys, missing files, values out of
            bounds or inconsistent (autoApprove without jwksFile, half a TLS pair), a variable
            holding invalid JSON; the message names each field where it was set (the file key
            and the file, or the environment variable), never its value.
    """
    return _cf.load_service_settings(
        ApproverSettings,
        config_file=config_file,
        config_env=CONFIG_ENV,
        error=ConfigError,
        environ=environ,
    )
