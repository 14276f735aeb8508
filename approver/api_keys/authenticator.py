"""The API-key approval path: check a presented key against the database and the Secret folder.

The registrar calls, for a request whose ``X-Agent-API-Key`` is not a JWT
(:func:`approver.api_keys.presented_api_key`)::

    outcome = await authenticator.authenticate(
        agent_id=request.agent_id, platform=request.platform, presented=key, now=now)
    ...
    # in the registration transaction, when the decision approves with this key:
    refusal = await claim_approval(conn, outcome, now=now)
    if refusal is not None: ...   # roll back / answer with the refusal

:meth:`ApiKeyAuthenticator.authenticate` reads (it writes only ``last_used_at``, at most once a
minute per key); the ``maxAgents`` counter is claimed by :func:`claim_approval` inside the
transaction that writes the approval, so two agents racing for a key's last slot cannot both
win.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from approver.api_keys import repository
from approver.api_keys.format import MalformedApiKey, parse_api_key, secret_matches
from approver.api_keys.reasons import ApiKeyReason
from approver.api_keys.records import ApiKeyRecord, KeySource
from approver.api_keys.secret_folder import SecretFolderKeys
from approver.domain.credential_outcome import CredentialOutcome, Verdict
from approver.domain.records import ApprovalMethod
from bootstrap_token import fingerprint


def _outcome(
    verdict: Verdict,
    reason: ApiKeyReason,
    *,
    credential: str | None = None,
    record: ApiKeyRecord | None = None,
    key_id: str | None = None,
    authenticated: bool = False,
    message: str | None = None,
) -> CredentialOutcome:
    return CredentialOutcome(
        verdict=verdict,
        approval_method=ApprovalMethod.API_KEY,
        reason=reason.value,
        security=verdict is Verdict.REFUSED and reason.security,
        authenticated=authenticated,
        message=message,
        credential=credential,
        key_id=record.key_id if record else key_id,
        key_name=record.name if record else None,
        key_source=record.source.value if record else None,
    )


class ApiKeyAuthenticator:
    """Checks API keys presented at registration.

    Args:
        engine: the approver's database (the ``api_keys`` table); None when only Secret-folder
            keys are used (tests, or a database-less setup).
        folder: the Secret-folder keys, or None.
        enabled: ``apiKeys.enabled``; False: every call is ``not_applicable``.
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine | None,
        folder: SecretFolderKeys | None = None,
        enabled: bool = True,
    ) -> None:
        self._engine = engine
        self._folder = folder
        self._enabled = enabled

    @property
    def enabled(self) -> bool:
        return self._enabled

    async def authenticate(
        self,
        *,
        agent_id: str,
        platform: str,
        presented: str | None,
        now: float,
        connection: AsyncConnection | None = None,
    ) -> CredentialOutcome:
        """Check ``presented`` for an agent.

        Order: enabled; presented; well-formed (``abk_<id>_<secret>``); the id names a key (the
        Secret folder first, then the database); its secret matches (SHA-256, then
        :func:`hmac.compare_digest`; an unknown id is compared against a dummy digest so it
        costs the same); not revoked, not expired; agent in scope (platform, agent-id glob);
        ``approved_count < maxAgents`` (a hint here: :func:`claim_approval` decides).

        Args:
            agent_id: the registering agent's id.
            platform: its ``platform``.
            presented: the API key string (from :func:`presented_api_key`), or None.
            now: seconds since the epoch.
            connection: run the lookup in this connection (e.g. the registrar's transaction);
                default: a short transaction of its own.

        Returns:
            A :class:`CredentialOutcome` with ``approval_method=api_key``; reason codes in
            :mod:`approver.api_keys.reasons`. Never contains the key.

        Raises:
            StoreUnavailable: the database could not be read now (the registrar answers 503).
        """
        if not self._enabled:
            return _outcome(Verdict.NOT_APPLICABLE, ApiKeyReason.DISABLED)
        if not presented:
            return _outcome(Verdict.NOT_APPLICABLE, ApiKeyReason.NOT_PRESENTED)
        credential = fingerprint(presented)
        try:
            parsed = parse_api_key(presented)
        except MalformedApiKey as exc:
            return _outcome(
                Verdict.REFUSED, ApiKeyReason.MALFORMED, credential=credential, message=str(exc)
            )
        at = datetime.fromtimestamp(now, UTC)
        record: ApiKeyRecord | None = None
        if self._folder is not None:
            await self._folder.refresh(now=now)
            record = self._folder.get(parsed.key_id)
        if record is None and self._engine is not None:
            record = await self._lookup(parsed.key_id, connection)
        if not secret_matches(parsed.secret, record.secret_hash if record else None):
            reason = ApiKeyReason.UNKNOWN if record is None else ApiKeyReason.BAD_SECRET
            return _outcome(
                Verdict.REFUSED,
                reason,
                credential=credential,
                record=record,
                key_id=parsed.key_id,
                message="no key has this id" if record is None else "secret does not match",
            )
        assert record is not None  # secret_matches is False without a stored digest
        unusable = record.unusable_reason(at)
        if unusable is not None:
            return _outcome(Verdict.REFUSED, unusable, credential=credential, record=record)
        refusal = record.scope.refusal(agent_id=agent_id, platform=platform)
        if refusal is None and record.slots_left == 0:
            refusal = ApiKeyReason.MAX_AGENTS_REACHED
        if refusal is not None:
            return _outcome(
                Verdict.REFUSED, refusal, credential=credential, record=record, authenticated=True
            )
        if record.source is KeySource.API:
            await self._touch(record.key_id, at, connection)
        return _outcome(
            Verdict.ACCEPTED,
            ApiKeyReason.ACCEPTED,
            credential=credential,
            record=record,
            authenticated=True,
        )

    async def _lookup(self, key_id: str, connection: AsyncConnection | None) -> ApiKeyRecord | None:
        if connection is not None:
            async with repository.translated():
                return await repository.get_key(connection, key_id)
        assert self._engine is not None
        async with repository.transaction(self._engine) as conn:
            return await repository.get_key(conn, key_id)

    async def _touch(self, key_id: str, at: datetime, connection: AsyncConnection | None) -> None:
        if connection is not None:
            async with repository.translated():
                await repository.touch(connection, key_id, at=at)
            return
        assert self._engine is not None
        async with repository.transaction(self._engine) as conn:
            await repository.touch(conn, key_id, at=at)


async def claim_approval(
    conn: AsyncConnection, outcome: CredentialOutcome, *, now: float
) -> str | None:
    """Claim one of the key's ``maxAgents`` slots in the approval's transaction (race-safe).

    Call it, in the transaction that writes the approval, for an ``accepted`` API-key outcome.
    Secret-folder keys have no counter (no scope): nothing is written and None is returned.

    Args:
        conn: the registrar's open transaction.
        outcome: the accepted outcome of :meth:`ApiKeyAuthenticator.authenticate`.
        now: seconds since the epoch.

    Returns:
        None when the approval may be written; else a reason code (``api_key_max_agents_reached``,
        ``api_key_revoked``, ``api_key_expired``, ``api_key_unknown``) and the caller must not
        write the approval (answer with that reason instead).

    Raises:
        ValueError: ``outcome`` is not an accepted API-key outcome.
        StoreUnavailable, StoreConflict.
    """
    if not outcome.accepted or outcome.approval_method is not ApprovalMethod.API_KEY:
        raise ValueError("claim_approval needs an accepted API-key outcome")
    if outcome.key_source != KeySource.API.value:
        return None
    assert outcome.key_id is not None
    async with repository.translated():
        reason = await repository.claim_approval(
            conn, outcome.key_id, at=datetime.fromtimestamp(now, UTC)
        )
    return reason.value if reason is not None else None
