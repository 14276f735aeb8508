"""``serviceAccountTokens`` settings (mounted into the approver's settings as
``serviceAccountTokens``).

YAML (camelCase; environment variables as for every section, e.g.
``AGENT_BOOTSTRAP_APPROVER_SERVICE_ACCOUNT_TOKENS__MODE=offline``)::

    serviceAccountTokens:
      enabled: false
      mode: tokenreview                  # or: offline
      audience: agent-approver           # the projected volume's audience
      allow: ["streamspace:streamspace-agent"]   # may approve on their own; [] = none
      bootstrapBinding: ifPresent        # or: required (recommended with bootstrap tokens)
      maxRemainingLifetimeSeconds: 3600
      leewaySeconds: 60
      reviewTimeoutSeconds: 5            # tokenreview mode
      # offline mode only:
      issuer: https://kubernetes.default.svc.cluster.local
      jwksFile: /etc/agent-bootstrap/sa-jwks/jwks.json      # or jwksUrl (exactly one)
      jwksUrl: https://oidc.example.com/openid/v1/jwks
      jwksCaFile: null                   # CA bundle for jwksUrl (default: system trust)
      jwksRefreshSeconds: 300
      jwksMinRefreshIntervalSeconds: 30

Like the other paths, a service-account token approves only while ``autoApprove.enabled`` is
true.
"""

from __future__ import annotations

import ipaddress
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, FilePath, field_validator, model_validator

from approver.service_accounts.allow import validate_pair

_LOOPBACK_NAMES = frozenset({"localhost"})


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServiceAccountSettings(BaseModel):
    """``serviceAccountTokens``: the service-account approval path."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )

    enabled: bool = Field(
        default=False,
        description="Default false. True: X-Agent-Service-Account-Token is verified and may "
        "approve (approval method 'service_account').",
    )
    mode: Literal["tokenreview", "offline"] = Field(
        default="tokenreview",
        description="tokenreview (default): ask the API server (needs create tokenreviews). "
        "offline: verify against the issuer's JWKS, no API server access.",
    )
    audience: str = Field(
        default="agent-approver",
        min_length=1,
        max_length=253,
        description="The audience the agent's projected token must be issued for. Default "
        "agent-approver.",
    )
    allow: frozenset[str] = Field(
        default=frozenset(),
        description="'namespace:serviceaccount' pairs whose pod-bound tokens approve on their "
        "own. Default empty: none (tokens then only back a bootstrap token).",
    )
    bootstrap_binding: Literal["ifPresent", "required"] = Field(
        default="ifPresent",
        alias="bootstrapBinding",
        description="ifPresent (default): when a request carries a bootstrap token and a "
        "service-account token, both must name the same pod. required: a bootstrap token "
        "approves only together with a matching service-account token (recommended).",
    )
    max_remaining_lifetime_seconds: int = Field(
        default=3600,
        alias="maxRemainingLifetimeSeconds",
        ge=600,
        le=7 * 24 * 3600,
        description="Largest exp - now accepted, in seconds. Default 3600 (the projected "
        "volume's default expirationSeconds); 600 .. 7 days.",
    )
    leeway_seconds: int = Field(
        default=60,
        alias="leewaySeconds",
        ge=0,
        le=300,
        description="Clock skew tolerated on nbf, exp and the lifetime bound, in seconds. "
        "Default 60.",
    )
    review_timeout_seconds: float = Field(
        default=5.0,
        alias="reviewTimeoutSeconds",
        gt=0,
        le=60,
        description="tokenreview: timeout of one TokenReview call, in seconds. Default 5.",
    )
    issuer: str | None = Field(
        default=None,
        min_length=1,
        description="offline: the required 'iss' (the API server's --service-account-issuer).",
    )
    jwks_file: FilePath | None = Field(
        default=None,
        alias="jwksFile",
        description="offline: the issuer's JWKS as a file (kubectl get --raw /openid/v1/jwks). "
        "Re-read every jwksRefreshSeconds.",
    )
    jwks_url: str | None = Field(
        default=None,
        alias="jwksUrl",
        description="offline: URL of the issuer's JWKS; https (http only on loopback).",
    )
    jwks_ca_file: FilePath | None = Field(
        default=None,
        alias="jwksCaFile",
        description="offline: PEM CA bundle trusted for jwksUrl. Default: the system's.",
    )
    jwks_refresh_seconds: int = Field(
        default=300,
        alias="jwksRefreshSeconds",
        ge=10,
        le=86400,
        description="offline: re-fetch the JWKS when older than this, in seconds. Default 300.",
    )
    jwks_min_refresh_interval_seconds: int = Field(
        default=30,
        alias="jwksMinRefreshIntervalSeconds",
        ge=1,
        le=3600,
        description="offline: fetch at most once per this many seconds, even for unknown kids. "
        "Default 30.",
    )

    @field_validator("allow")
    @classmethod
    def _pairs(cls, value: frozenset[str]) -> frozenset[str]:
        for pair in value:
            validate_pair(pair)
        return value

    @field_validator("jwks_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("jwksUrl must be an absolute https:// URL")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("jwksUrl must use https (http only for a loopback address)")
        if parts.username or parts.password:
            raise ValueError("jwksUrl must not carry credentials")
        return value

    @model_validator(mode="after")
    def _mode_consistent(self) -> Self:
        offline_only = {
            "issuer": self.issuer,
            "jwksFile": self.jwks_file,
            "jwksUrl": self.jwks_url,
            "jwksCaFile": self.jwks_ca_file,
        }
        if self.bootstrap_binding == "required" and not self.enabled:
            raise ValueError(
                "bootstrapBinding 'required' needs enabled: true (otherwise no bootstrap token "
                "could ever approve)"
            )
        if self.mode == "tokenreview":
            given = [k for k, v in offline_only.items() if v is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to mode 'offline'")
            return self
        if not self.enabled:
            return self
        if self.issuer is None:
            raise ValueError("issuer is required in mode 'offline'")
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("mode 'offline' needs exactly one of jwksFile and jwksUrl")
        if self.jwks_ca_file is not None and self.jwks_url is None:
            raise ValueError("jwksCaFile only applies with jwksUrl")
        return self
