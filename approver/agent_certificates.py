"""Agent client certificates, the use case: issue one to an approved agent, renew it, revoke it,
check a presented one, list what no longer counts. No HTTP (that is
:mod:`approver.http.certificates`).

The model is kubelet TLS bootstrapping: a credential the agent already holds buys a certificate
signing request, and the certificate renews itself before it expires.

**Issue** (``POST /api/v1/agents/{agentId}/certificate``): authorized by the agent's *current
per-agent key* (the key the approver handed it on approval: only its SHA-256 is kept), or, for a
renewal, by a *live certificate of the same agent* presented in the TLS handshake. Either way the
agent must be ``active`` (and approved in the control plane, when one is configured): an
inactive agent (pod deleted, revoked, rejected) gets no certificate and no renewal. The CSR is
checked (:func:`approver.domain.agent_certificates.check_csr`), the certificate names the agent
in its URI SAN (cluster, namespace, pod, agent id), is ``clientAuth`` only and lives
``agentCertificates.lifetimeSeconds`` (default 24 h). Its serial is recorded with the agent and
the issuance is an audit event stored in the same transaction. An agent holds at most
``maxLivePerAgent`` live certificates: issuing one more revokes the oldest (``superseded``), so a
leaked key cannot mint an unbounded number of valid certificates.

**Check** (the gate): the TLS layer has verified the chain to the trusted agent CAs, the
validity and the ``clientAuth`` usage (OpenSSL, ``agentCertificates.trustBundleFile``); here the
certificate's agent id must equal the request's, its serial must be one the approver issued to
that agent and neither revoked nor superseded, and the agent must be active.

**Revoked**: a certificate stops counting when an administrator revokes it, when it is
superseded, and when its agent stops being active or is deleted: :meth:`revoked` lists all of
them until they expire (JSON for control planes, and a CRL signed by the current agent CA for
those of its certificates).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from approver.agent_certs import repository
from approver.agent_certs.ca_files import SigningCa
from approver.agent_certs.records import CertificateRow, IssuedWith, RevokedReason, serial_hex
from approver.audit.events import emit_all, record_event
from approver.domain.agent_certificates import (
    AgentIdentity,
    CsrRefused,
    RevokedSerial,
    build_certificate,
    build_crl,
    check_csr,
    identity_of,
    is_segment,
    lifetime,
)
from approver.domain.credentials import sha256_hex
from approver.domain.records import AgentRecord
from approver.gate import INVALID_API_KEY, MISSING_API_KEY, GateRefusal, require_active
from approver.store import Store
from bootstrap_token import AuditSink

#: ``error`` codes of certificate refusals (besides the gate's).
CERTIFICATE_MISMATCH = "certificate_agent_mismatch"
CERTIFICATE_NOT_LIVE = "certificate_not_live"
MISSING_CREDENTIAL = "missing_credential"
RATE_LIMITED = "certificate_rate_limited"
#: Seconds a built revoked list (JSON or CRL) is served again at most (less than any
#: crlValiditySeconds); any revocation, by any path, rebuilds it at the next request.
CRL_CACHE_SECONDS = 30
#: Rows stay this long past their certificate's notAfter before they are deleted.
PURGE_AFTER = timedelta(days=1)


class RateLimited(GateRefusal):
    """429: the agent was issued a certificate less than ``min_reissue_seconds`` ago and still
    holds a live one. ``retry_after`` in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            429,
            RATE_LIMITED,
            "this agent was issued a certificate moments ago and still holds it; renew later",
            security=True,
        )
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """What an issuance returns: the certificate (PEM), the CA that signed it (PEM), and its
    row."""

    certificate_pem: str
    ca_pem: str
    row: CertificateRow
    renew_after: datetime


@dataclass(frozen=True, slots=True)
class CertificatePolicy:
    """``agentCertificates`` settings the use case reads.

    Attributes:
        lifetime_seconds: validity of an issued certificate (capped at the CA's notAfter).
        max_live_per_agent: live certificates one agent may hold (>= 1).
        cluster: the URI SAN's cluster when the agent's record names none.
        control_plane: True when a control plane is configured: the agent must then also be
            approved there.
        crl_validity_seconds: the CRL's nextUpdate - thisUpdate.
        min_reissue_seconds: an agent that holds a live certificate gets another one at most
            this often (429 ``certificate_rate_limited`` before); one without gets it at once.
    """

    lifetime_seconds: int = 86400
    max_live_per_agent: int = 2
    cluster: str = "default"
    control_plane: bool = False
    crl_validity_seconds: int = 600
    min_reissue_seconds: int = 60


def certificate_of(der: bytes | None) -> x509.Certificate | None:
    """A verified peer certificate (DER, from the TLS handshake) parsed, or None."""
    if not der:
        return None
    return x509.load_der_x509_certificate(der)


def peer_serial(certificate: x509.Certificate) -> str:
    return serial_hex(certificate.serial_number)


class AgentCertificates:
    """Issue, renew, check, revoke agent certificates (module docstring).

    Args:
        store: the agent store (the ``agent_certificates`` table lives in its database).
        ca: the signing agent CA, followed on disk.
        audit: where stored events and refusals are emitted.
        policy: see :class:`CertificatePolicy`.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        *,
        store: Store,
        ca: SigningCa,
        audit: AuditSink,
        policy: CertificatePolicy,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._ca = ca
        self._audit = audit
        self.policy = policy
        self._clock = clock
        #: The revoked lists built last, with what they were built from (module docstring of
        #: :meth:`crl`): one build at a time, however many requests arrive.
        self._lists: dict[str, tuple[object, datetime, Any]] = {}
        self._building = asyncio.Lock()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _usable(self, record: AgentRecord | None, agent_id: str) -> AgentRecord:
        if record is None or record.agent_id != agent_id:
            raise GateRefusal(
                403, INVALID_API_KEY, "the key is not this agent's current key", security=True
            )
        require_active(record, control_plane=self.policy.control_plane)
        return record

    async def check_certificate(
        self, *, agent_id: str, certificate: x509.Certificate
    ) -> CertificateRow:
        """The row of a presented (chain-verified) certificate that authorizes ``agent_id``.

        Raises:
            GateRefusal: 403 ``certificate_agent_mismatch`` (it names another agent or none),
                403 ``certificate_not_live`` (not issued by this approver to that agent,
                revoked, superseded or expired).
            StoreUnavailable.
        """
        identity = identity_of(certificate)
        if identity is None or identity.agent_id != agent_id:
            raise GateRefusal(
                403,
                CERTIFICATE_MISMATCH,
                "the client certificate names another agent than the request",
                security=True,
            )
        serial = peer_serial(certificate)
        async with self._store.reading() as conn:
            row = await repository.get(conn, serial)
        if row is None or row.agent_id != agent_id or not row.live(self._now()):
            state = "unknown" if row is None else (row.revoked_reason or "expired")
            raise GateRefusal(
                403,
                CERTIFICATE_NOT_LIVE,
                f"the client certificate (serial {serial}) does not count: {state}",
                security=True,
            )
        if row.sha256 != certificate.fingerprint(hashes.SHA256()).hex():
            raise GateRefusal(
                403, CERTIFICATE_NOT_LIVE, "the client certificate is not the one issued",
                security=True,
            )  # fmt: skip
        if row.issuer_sha256 not in self._ca.current.trusted:
            # A resumed TLS session skips the chain check against the bundle in use now.
            raise GateRefusal(
                403, CERTIFICATE_NOT_LIVE,
                "the client certificate's CA is no longer in the trust bundle", security=True,
            )  # fmt: skip
        return row

    async def is_live(self, *, agent_id: str, serial: str) -> bool:
        """True while the certificate ``serial`` of ``agent_id`` is live (an open connection's
        recheck). Raises StoreUnavailable."""
        async with self._store.reading() as conn:
            row = await repository.get(conn, serial)
        return (
            row is not None
            and row.agent_id == agent_id
            and row.live(self._now())
            and row.issuer_sha256 in self._ca.current.trusted
        )

    async def issue(
        self,
        *,
        agent_id: str,
        csr_pem: str,
        api_key: str | None,
        peer: x509.Certificate | None,
    ) -> IssuedCertificate:
        """Issue a certificate to ``agent_id`` for the CSR (module docstring).

        Args:
            agent_id: the agent (already checked for its characters).
            csr_pem: the PKCS #10 request, PEM.
            api_key: the ``X-Agent-API-Key`` value, or None.
            peer: the chain-verified client certificate of the TLS connection, or None. When
                present it is the credential (a renewal) and ``api_key`` is not consulted.

        Raises:
            GateRefusal: 401 without a credential; 403 for a credential that does not
                authorize this agent, or an agent that is not active (approved).
            CsrRefused: the CSR is not signed (``invalid_csr``, ``csr_not_allowed``).
            StoreUnavailable.
        """
        if peer is not None:
            await self.check_certificate(agent_id=agent_id, certificate=peer)
            issued_with = IssuedWith.CERTIFICATE
            digest = None
        elif api_key:
            issued_with = IssuedWith.API_KEY
            digest = sha256_hex(api_key)
        else:
            raise GateRefusal(
                401,
                MISSING_CREDENTIAL,
                "send the agent's key in X-Agent-API-Key, or its certificate in the handshake",
            )
        if digest is not None:
            record = await self._store.get_agent_by_key(digest)
        else:
            record = await self._store.get_agent(agent_id)
        record = self._usable(record, agent_id)
        ca = self._ca.current
        # The token's cluster claim is free text (the webhook's ``cluster`` setting); one that
        # cannot stand in the URI as it is gives way to ours rather than to a certificate the
        # gate could not read back.
        cluster = record.cluster if record.cluster and is_segment(record.cluster) else None
        identity = AgentIdentity(
            cluster=cluster or self.policy.cluster,
            namespace=_segment(record.namespace),
            pod=_segment(record.pod_name),
            agent_id=agent_id,
        )
        public_key = check_csr(csr_pem, identity)
        now = self._now()
        validity = lifetime(
            now=now,
            seconds=self.policy.lifetime_seconds,
            ca_not_after=ca.certificate.not_valid_after_utc,
        )
        certificate = build_certificate(
            identity=identity,
            public_key=public_key,
            ca_certificate=ca.certificate,
            ca_key=ca.key,
            serial=_new_serial(),
            validity=validity,
        )
        row = CertificateRow(
            serial=serial_hex(certificate.serial_number),
            agent_id=agent_id,
            sha256=certificate.fingerprint(hashes.SHA256()).hex(),
            issued_at=now,
            not_before=validity.not_before,
            not_after=validity.not_after,
            issued_with=issued_with,
            issuer_sha256=ca.sha256,
        )
        async with self._store.transaction() as tx:
            # Read again under the row lock: an administrator's revoke that committed after the
            # check above must win, never a certificate for a just-revoked agent.
            current = await tx.get_agent(agent_id, lock=True)
            if current is None or (digest is not None and current.api_key_hash != digest):
                raise GateRefusal(
                    403, INVALID_API_KEY, "the key is not this agent's current key", security=True
                )
            if peer is not None:
                # Again under the lock: a revocation of the presented certificate that
                # committed since the check above must win.
                presented = await repository.get(tx.connection, peer_serial(peer), lock=True)
                if presented is None or not presented.live(now):
                    raise GateRefusal(
                        403, CERTIFICATE_NOT_LIVE,
                        "the client certificate was revoked meanwhile", security=True,
                    )  # fmt: skip
            self._usable(current, agent_id)
            live = await repository.for_agent(tx.connection, agent_id, live_at=now)
            if live and self.policy.min_reissue_seconds:
                wait = live[-1].issued_at + timedelta(seconds=self.policy.min_reissue_seconds)
                if wait > now:
                    raise RateLimited(max(1, math.ceil((wait - now).total_seconds())))
            excess = len(live) + 1 - self.policy.max_live_per_agent
            superseded = [r.serial for r in live[: max(excess, 0)]]
            await repository.revoke(
                tx.connection,
                superseded,
                at=now,
                reason=RevokedReason.SUPERSEDED,
                by="agent-certificates",
            )
            await repository.insert(tx.connection, row)
            stored = await tx.append_audit(
                record_event(
                    event="agent.certificate",
                    decision="issued",
                    reason=issued_with.value,
                    at=now,
                    actor=agent_id,
                    record=current,
                    message=(
                        f"serial={row.serial} sha256={row.sha256[:16]} "
                        f"notAfter={row.not_after:%Y-%m-%dT%H:%M:%SZ} "
                        f"issuer={ca.sha256[:16]}"
                        + (f" superseded={','.join(superseded)}" if superseded else "")
                    ),
                )
            )
        emit_all(self._audit, [stored])
        return IssuedCertificate(
            certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            ca_pem=ca.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            row=row,
            renew_after=validity.renew_after,
        )

    async def certificates(self, agent_id: str, *, actor: str) -> list[CertificateRow]:
        """Every certificate issued to ``agent_id``, oldest first, for an administrator: the
        read is a stored audit event (``admin.certificates``), as every admin read is. Raises
        StoreUnavailable."""
        async with self._store.reading() as conn:
            rows = await repository.for_agent(conn, agent_id)
        async with self._store.transaction() as tx:
            stored = await tx.append_audit(
                record_event(
                    event="admin.certificates",
                    decision="listed",
                    reason="ok",
                    at=self._now(),
                    actor=actor,
                    agent_id=agent_id,
                    message=f"count={len(rows)}",
                )
            )
        emit_all(self._audit, [stored])
        return rows

    async def revoke(self, *, serial: str, actor: str) -> CertificateRow | None:
        """Revoke one certificate (an administrator). Returns its row after the change, or None
        for an unknown serial. Revoking a revoked one changes nothing (its first revocation
        stays). Raises StoreUnavailable."""
        now = self._now()
        async with self._store.transaction() as tx:
            changed = await repository.revoke(
                tx.connection, [serial], at=now, reason=RevokedReason.REVOKED, by=actor
            )
            row = await repository.get(tx.connection, serial)
            if row is None:
                return None
            stored = await tx.append_audit(
                record_event(
                    event="agent.certificate",
                    decision="revoked" if changed else "unchanged",
                    reason="revoked_by_admin" if changed else "already_revoked",
                    at=now,
                    actor=actor,
                    agent_id=row.agent_id,
                    security=bool(changed),
                    message=f"serial={serial}",
                )
            )
        emit_all(self._audit, [stored])
        return row

    async def purge_expired(self) -> int:
        """Delete the rows of certificates expired more than :data:`PURGE_AFTER` ago; how
        many. Raises StoreUnavailable."""
        async with self._store.transaction() as tx:
            return await repository.purge_expired(tx.connection, self._now() - PURGE_AFTER)

    async def revoked(self) -> list[tuple[str, datetime]]:
        """``(serial hex, revoked at)`` of every unexpired certificate that no longer counts
        (module docstring). Raises StoreUnavailable."""
        entries: list[tuple[str, datetime]] = await self._cached("json", self._read_revoked)
        return entries

    async def _read_revoked(self, version: object) -> list[tuple[str, datetime]]:
        async with self._store.reading() as conn:
            return await repository.revoked_unexpired(conn, self._now())

    async def crl(self) -> bytes:
        """A DER CRL (RFC 5280 section 5) of the revoked certificates the *current* agent CA
        issued, signed by it. Certificates of a CA being rotated out are in :meth:`revoked`
        (a CRL's issuer must be the certificates' issuer, section 5.1.2.3, and the old CA's key
        is not kept). Raises StoreUnavailable."""
        der: bytes = await self._cached("crl", self._build_crl)
        return der

    async def _build_crl(self, version: object) -> bytes:
        ca = self._ca.current
        now = self._now()
        async with self._store.reading() as conn:
            entries = await repository.revoked_unexpired(conn, now, issuer_sha256=ca.sha256)

        def sign() -> bytes:
            crl = build_crl(
                revoked=[RevokedSerial(int(s, 16), at) for s, at in entries],
                ca_certificate=ca.certificate,
                ca_key=ca.key,
                now=now,
                next_update=timedelta(seconds=self.policy.crl_validity_seconds),
                number=int(now.timestamp()),
            )
            return crl.public_bytes(serialization.Encoding.DER)

        # Off the event loop: a CRL of many thousand entries takes tens of milliseconds to sign.
        return await asyncio.to_thread(sign)

    async def _cached(self, kind: str, build: Callable[[object], Awaitable[Any]]) -> Any:
        """The list ``kind`` as last built while nothing was revoked since (by any path: the
        table's revocation count and latest time, one cheap query) and the CA is the same, for
        at most :data:`CRL_CACHE_SECONDS`; else built again, once for all waiting requests.
        Unauthenticated callers cannot make the approver rebuild a large list per request."""
        async with self._store.reading() as conn:
            version = (self._ca.current.sha256, await repository.revocation_version(conn))
        now = self._now()
        async with self._building:
            cached = self._lists.get(kind)
            if (
                cached is not None
                and cached[0] == version
                and now - cached[1] < timedelta(seconds=CRL_CACHE_SECONDS)
            ):
                return cached[2]
            value = await build(version)
            self._lists[kind] = (version, now, value)
            return value


def _segment(value: str | None) -> str | None:
    """``value`` when it can stand in the identity URI as it is, else None (unbound)."""
    return value if value and is_segment(value) else None


def _new_serial() -> int:
    """159 random bits, never 0 (RFC 5280 section 4.1.2.2; CA/Browser Forum BR 7.1: at least
    64 bits of CSPRNG output)."""
    return secrets.randbits(159) | 1


__all__ = [
    "CERTIFICATE_MISMATCH",
    "CERTIFICATE_NOT_LIVE",
    "MISSING_API_KEY",
    "MISSING_CREDENTIAL",
    "RATE_LIMITED",
    "AgentCertificates",
    "CertificatePolicy",
    "CsrRefused",
    "IssuedCertificate",
    "RateLimited",
    "certificate_of",
    "peer_serial",
]
