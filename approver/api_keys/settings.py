"""``apiKeys`` settings (mounted into the approver's settings as ``apiKeys``).

YAML (camelCase; environment ``AGENT_BOOTSTRAP_APPROVER_API_KEYS__ENABLED=true`` etc.)::

    apiKeys:
      enabled: false               # Helm: agents.autoApprove.requireApiKey
      secretDir: null              # e.g. /etc/agent-bootstrap/api-keys (a mounted Secret)
      secretDirPollSeconds: 10
      rotationGraceSeconds: 86400

The seed's Helm value ``agents.autoApprove.requireApiKey: true`` ("also allow API key auth")
renders ``apiKeys.enabled: true``. Despite its name it *requires* nothing: it adds the API-key
path (docs/design.md, "Decision, in order", step 3) next to the bootstrap-token and service-account
paths, and like them it approves only while ``autoApprove.enabled`` is true. See
``docs/api-keys-and-service-accounts.md``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, DirectoryPath, Field

from approver.api_keys.admin import DEFAULT_ROTATION_GRACE_SECONDS, MAX_ROTATION_GRACE_SECONDS


class ApiKeySettings(BaseModel):
    """``apiKeys``: the API-key approval path."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )

    enabled: bool = Field(
        default=False,
        description="Default false. True: a valid, in-scope API key in X-Agent-API-Key approves "
        "the agent (approval method 'api_key') while autoApprove.enabled is true. Helm: "
        "agents.autoApprove.requireApiKey.",
    )
    secret_dir: DirectoryPath | None = Field(
        default=None,
        alias="secretDir",
        description="A mounted Secret folder: one file per key, file name = key name, content = "
        "the full key. Re-read on change. Default: none.",
    )
    secret_dir_poll_seconds: float = Field(
        default=10.0,
        alias="secretDirPollSeconds",
        gt=0,
        le=3600,
        description="How often the Secret folder is checked for changes, in seconds. Default 10.",
    )
    rotation_grace_seconds: int = Field(
        default=DEFAULT_ROTATION_GRACE_SECONDS,
        alias="rotationGraceSeconds",
        ge=0,
        le=MAX_ROTATION_GRACE_SECONDS,
        description="Default grace period of a rotation (the old key keeps working), in seconds. "
        "Default 86400 (24 h); 0 .. 30 days.",
    )
