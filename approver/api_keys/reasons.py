"""Reason codes of the API-key path (stable, snake_case; in answers, records and audit events).

=================================  ========  ========  =============================================
reason                             verdict   security  meaning
=================================  ========  ========  =============================================
api_key_accepted                   accepted  no        key found, secret matches, not revoked or
                                                       expired, agent in the key's scope
api_keys_disabled                  n/a       no        ``apiKeys.enabled`` is false (the key is not
                                                       looked at)
no_api_key                         n/a       no        no API key in ``X-Agent-API-Key``
api_key_malformed                  refused   no        not ``abk_<id>_<secret>``: e.g. a legacy
                                                       shared StreamSpace key; waits for an admin
api_key_unknown                    refused   yes       the id names no key (database or Secret)
api_key_bad_secret                 refused   yes       the id exists, the secret does not match
api_key_revoked                    refused   yes       the key was revoked (or its rotation grace
                                                       period ended): a leaked old key, perhaps
api_key_expired                    refused   no        the key's ``expiresAt`` has passed
api_key_platform_not_allowed       refused   no        ``platform`` not in the key's
                                                       ``scope.platforms``
api_key_agent_id_not_allowed       refused   no        the agent id does not match the key's
                                                       ``scope.agentIdPattern``
api_key_max_agents_reached         refused   no        the key approved ``scope.maxAgents``
                                                       agents already (checked again, race-safe,
                                                       by :func:`~approver.api_keys.claim_approval`
                                                       in the approval's transaction)
=================================  ========  ========  =============================================

A database that cannot be read is no reason code: :meth:`ApiKeyAuthenticator.authenticate` raises
:class:`approver.store.StoreUnavailable` and the registrar answers 503.
"""

from __future__ import annotations

from enum import StrEnum


class ApiKeyReason(StrEnum):
    """The API-key path's reason codes (table above)."""

    ACCEPTED = "api_key_accepted"
    DISABLED = "api_keys_disabled"
    NOT_PRESENTED = "no_api_key"
    MALFORMED = "api_key_malformed"
    UNKNOWN = "api_key_unknown"
    BAD_SECRET = "api_key_bad_secret"  # noqa: S105 - a reason code
    REVOKED = "api_key_revoked"
    EXPIRED = "api_key_expired"
    PLATFORM_NOT_ALLOWED = "api_key_platform_not_allowed"
    AGENT_ID_NOT_ALLOWED = "api_key_agent_id_not_allowed"
    MAX_AGENTS_REACHED = "api_key_max_agents_reached"

    @property
    def security(self) -> bool:
        """True for refusals that mean a guessed, forged or leaked-and-revoked key."""
        return self in _SECURITY


_SECURITY = frozenset({ApiKeyReason.UNKNOWN, ApiKeyReason.BAD_SECRET, ApiKeyReason.REVOKED})
