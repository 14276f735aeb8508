"""An API key's scope: which agents it may approve. Model and pure evaluation.

Shape (JSON/YAML, camelCase; every member optional, an absent member does not restrict)::

    {"platforms": ["docker"],              # allowed ``platform`` values, exact match
     "agentIdPattern": "docker-eu-*",      # shell-style glob over the whole agent id
     "maxAgents": 20}                      # how many agents this key may ever approve

``agentIdPattern`` is a glob, matched against the *whole* agent id, case-sensitively, with
:func:`fnmatch.fnmatchcase`: ``*`` any run of characters, ``?`` one character, ``[abc]`` /
``[!abc]`` a character set. A glob rather than a regular expression because it is what operators
write for names (``docker-*``), it always means a full match (no forgotten ``^...$``), and it
cannot be written to backtrack catastrophically.

``maxAgents`` counts approvals the key *made* (a counter on the key's row, incremented in the
approval's transaction), not agents currently active: deleting an agent does not give its slot
back, so a leaked scoped key approves at most ``maxAgents`` agents, ever. Rotating a key gives
the new key the old key's scope with a fresh counter.
"""

from __future__ import annotations

import fnmatch

from pydantic import BaseModel, ConfigDict, Field, field_validator

from approver.api_keys.reasons import ApiKeyReason


class ApiKeyScope(BaseModel):
    """What a key may approve. The empty scope approves any agent, without limit."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )

    platforms: frozenset[str] = Field(
        default=frozenset(),
        description="Allowed 'platform' values (exact). Empty (default): any platform.",
    )
    agent_id_pattern: str | None = Field(
        default=None,
        alias="agentIdPattern",
        min_length=1,
        max_length=253,
        description="Glob the whole agent id must match (fnmatchcase). Default: any id.",
    )
    max_agents: int | None = Field(
        default=None,
        alias="maxAgents",
        ge=1,
        le=1_000_000,
        description="Most agents this key may ever approve. Default: no limit.",
    )

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, value: frozenset[str]) -> frozenset[str]:
        for platform in value:
            if not 1 <= len(platform) <= 64:
                raise ValueError("each platform must be 1..64 characters")
        return value

    def refusal(self, *, agent_id: str, platform: str) -> ApiKeyReason | None:
        """None when ``agent_id``/``platform`` are in scope, else the reason code.

        ``maxAgents`` is not checked here: it needs the database (see
        :func:`approver.api_keys.claim_approval`).
        """
        if self.platforms and platform not in self.platforms:
            return ApiKeyReason.PLATFORM_NOT_ALLOWED
        if self.agent_id_pattern is not None and not fnmatch.fnmatchcase(
            agent_id, self.agent_id_pattern
        ):
            return ApiKeyReason.AGENT_ID_NOT_ALLOWED
        return None

    def to_json(self) -> dict[str, object]:
        """The scope as JSON: ``{"platforms": [sorted], "agentIdPattern", "maxAgents"}``."""
        return {
            "platforms": sorted(self.platforms),
            "agentIdPattern": self.agent_id_pattern,
            "maxAgents": self.max_agents,
        }
