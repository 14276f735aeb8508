"""The API-key approval path (``approval_method=api_key``), for agents outside the cluster.

Modules, types first:

* :mod:`~approver.api_keys.format`: ``abk_<id>_<secret>``: generate, parse, hash, compare.
* :mod:`~approver.api_keys.reasons`: reason codes.
* :mod:`~approver.api_keys.scope`: the scope model (platforms, agent-id glob, max agents).
* :mod:`~approver.api_keys.records`: key records and lifecycle state.
* :mod:`~approver.api_keys.settings`: ``apiKeys`` settings.
* :mod:`~approver.api_keys.tables`, :mod:`~approver.api_keys.repository`: the ``api_keys`` table.
* :mod:`~approver.api_keys.secret_folder`: keys from a mounted Secret (GitOps).
* :mod:`~approver.api_keys.authenticator`: the registrar's entry point, and ``claim_approval``.
* :mod:`~approver.api_keys.admin`, :mod:`~approver.api_keys.wire`,
  :mod:`~approver.http.api_keys`: the admin actions and their HTTP API.
"""

from approver.api_keys.admin import (
    ApiKeyAdmin,
    ApiKeyAdminError,
    ApiKeyNotFound,
    ApiKeyNotManaged,
    ApiKeyStateConflict,
    IssuedKey,
    Revocation,
    Rotation,
)
from approver.api_keys.authenticator import ApiKeyAuthenticator, claim_approval
from approver.api_keys.format import (
    API_KEY_HEADER,
    KEY_PATTERN,
    MalformedApiKey,
    generate_key,
    parse_api_key,
    presented_api_key,
)
from approver.api_keys.reasons import ApiKeyReason
from approver.api_keys.records import ApiKeyRecord, KeySource, KeyState
from approver.api_keys.scope import ApiKeyScope
from approver.api_keys.secret_folder import SecretFolderKeys
from approver.api_keys.settings import ApiKeySettings
from approver.api_keys.tables import api_keys, api_keys_metadata

__all__ = [
    "API_KEY_HEADER",
    "KEY_PATTERN",
    "ApiKeyAdmin",
    "ApiKeyAdminError",
    "ApiKeyAuthenticator",
    "ApiKeyNotFound",
    "ApiKeyNotManaged",
    "ApiKeyReason",
    "ApiKeyRecord",
    "ApiKeyScope",
    "ApiKeySettings",
    "ApiKeyStateConflict",
    "IssuedKey",
    "KeySource",
    "KeyState",
    "MalformedApiKey",
    "Revocation",
    "Rotation",
    "SecretFolderKeys",
    "api_keys",
    "api_keys_metadata",
    "claim_approval",
    "generate_key",
    "parse_api_key",
    "presented_api_key",
]
