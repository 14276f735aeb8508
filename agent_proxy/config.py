"""The agent proxy's settings, from the environment (``AGENT_BOOTSTRAP_PROXY_*``).

=================================  ===============================================================
variable                           meaning
=================================  ===============================================================
``..._UPSTREAM_URL``               the approver, ``https://host:port`` (required)
``..._CA_FILE``                    PEM bundle that signs the approver's serving certificate
                                   (required)
``..._LISTEN_HOST``                default ``127.0.0.1``: the pod's loopback, only its containers
``..._LISTEN_PORT``                default ``8480``
``..._STATE_DIR``                  where the key and certificate are kept (an ``emptyDir``);
                                   default ``/var/run/agent-bootstrap-proxy``
``..._KEY_TYPE``                   ``p256`` (default: ECDSA P-256, every TLS stack) or ``ed25519``
``..._RETRY_SECONDS``              first wait after a failed certificate request; doubles up to
                                   ``..._MAX_RETRY_SECONDS`` (default 2 and 60)
=================================  ===============================================================

A setting that does not validate stops the proxy at start with the variable named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, FilePath, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "AGENT_BOOTSTRAP_PROXY_"


class ConfigError(ValueError):
    """Settings that cannot be used; the message names the variables, never values."""


class ProxySettings(BaseSettings):
    """See the module docstring."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    upstream_url: str = Field(description="The approver's https:// base URL.")
    ca_file: FilePath = Field(description="PEM CA bundle of the approver's serving certificate.")
    listen_host: str = Field(default="127.0.0.1", min_length=1)
    listen_port: int = Field(default=8480, ge=1, le=65535)
    state_dir: Path = Field(default=Path("/var/run/agent-bootstrap-proxy"))
    key_type: Literal["p256", "ed25519"] = "p256"
    retry_seconds: float = Field(default=2.0, gt=0, le=3600)
    max_retry_seconds: float = Field(default=60.0, gt=0, le=86400)

    @field_validator("upstream_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (the proxy originates TLS)")
        return value.rstrip("/")


def load_settings() -> ProxySettings:
    """The settings from the environment.

    Raises:
        ConfigError: naming each variable that is missing or invalid, and why.
    """
    try:
        return ProxySettings()
    except ValidationError as exc:
        problems = [
            f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise ConfigError("; ".join(problems)) from None
