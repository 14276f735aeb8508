"""The scope model and its evaluation (platforms, agent-id glob)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from approver.api_keys import ApiKeyReason, ApiKeyScope

DOCKER_EU = ApiKeyScope.model_validate(
    {"platforms": ["docker"], "agentIdPattern": "docker-eu-*", "maxAgents": 5}
)


@pytest.mark.parametrize(
    ("scope", "agent_id", "platform", "expected"),
    [
        (ApiKeyScope(), "anything", "kubernetes", None),
        (DOCKER_EU, "docker-eu-host1", "docker", None),
        (DOCKER_EU, "docker-eu-host1", "kubernetes", ApiKeyReason.PLATFORM_NOT_ALLOWED),
        (DOCKER_EU, "docker-us-host1", "docker", ApiKeyReason.AGENT_ID_NOT_ALLOWED),
        (DOCKER_EU, "x-docker-eu-host1", "docker", ApiKeyReason.AGENT_ID_NOT_ALLOWED),
        (DOCKER_EU, "DOCKER-EU-host1", "docker", ApiKeyReason.AGENT_ID_NOT_ALLOWED),
        (ApiKeyScope(agent_id_pattern="host-?"), "host-1", "docker", None),
        (
            ApiKeyScope(agent_id_pattern="host-?"),
            "host-12",
            "docker",
            ApiKeyReason.AGENT_ID_NOT_ALLOWED,
        ),
        (
            ApiKeyScope(agent_id_pattern="host-[!0]"),
            "host-0",
            "docker",
            ApiKeyReason.AGENT_ID_NOT_ALLOWED,
        ),
        (ApiKeyScope(platforms=frozenset({"docker", "vm"})), "a", "vm", None),
    ],
)
def test_refusal(
    scope: ApiKeyScope, agent_id: str, platform: str, expected: ApiKeyReason | None
) -> None:
    """The whole agent id must match the glob (case-sensitive); the platform must be listed."""
    assert scope.refusal(agent_id=agent_id, platform=platform) == expected


@pytest.mark.parametrize(
    "data",
    [
        {"maxAgents": 0},
        {"maxAgents": -1},
        {"agentIdPattern": ""},
        {"platforms": [""]},
        {"unknown": 1},
    ],
)
def test_invalid_scopes(data: dict[str, object]) -> None:
    """A zero/negative maxAgents, empty pattern or platform, or unknown member is refused."""
    with pytest.raises(ValidationError):
        ApiKeyScope.model_validate(data)


def test_json_round_trip() -> None:
    """to_json() is the camelCase shape the model reads back."""
    assert ApiKeyScope.model_validate(DOCKER_EU.to_json()) == DOCKER_EU
    assert DOCKER_EU.to_json() == {
        "platforms": ["docker"],
        "agentIdPattern": "docker-eu-*",
        "maxAgents": 5,
    }
