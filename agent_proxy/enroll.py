"""The agent's certificate, obtained and renewed by the proxy.

Flow (docs/agent-certificates.md):

1. The agent registers through the proxy; the approver's approved answer carries the agent's
   key (``apiKey``) and id. :meth:`Enrollment.enroll` makes a fresh key pair, sends a CSR with
   that key in ``X-Agent-API-Key`` to ``POST /api/v1/agents/{agentId}/certificate``, and keeps
   the certificate. The key is held in memory only, to be able to enroll again (a certificate
   that stopped counting, a restarted proxy whose certificate expired).
2. At the answer's ``renewAfter`` (two thirds of the life) :meth:`Enrollment.run` renews with a
   new key pair, the current certificate being the credential (in the TLS handshake). A failure
   is retried with doubling waits; with the key known, a refused renewal falls back to it.

Key and certificate are written to the state folder (0600, each replaced by one rename, key
first) and read back at start, so a restarted proxy keeps its certificate. The TLS client
context (:attr:`Enrollment.context`) presents the certificate while it is valid; before there
is one, it presents none (the approver asks but does not require, and registration needs none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from agent_proxy.config import ProxySettings

log = logging.getLogger(__name__)

CERTIFICATE_PATH = "/api/v1/agents/{agent_id}/certificate"
KEY_HEADER = "X-Agent-API-Key"
_AGENT_URI = re.compile(r"agent-bootstrap://[^/]+/ns/[^/]+/pod/[^/]+/agent/([A-Za-z0-9._:-]+)")

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


#: What a handshake that refuses the client certificate looks like from here: an alert during
#: the handshake (TLS 1.2), or the connection closed on the first read after it (TLS 1.3). An
#: approver restarting looks the same, hence :meth:`Enrollment.certificate_refused`.
REFUSED = (aiohttp.ClientSSLError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


class EnrollmentError(Exception):
    """A certificate request that did not give a certificate (status and error code; never the
    key)."""


@dataclass(frozen=True)
class Held:
    """The certificate in use: its parsed form, when to renew it, and a client context
    presenting it."""

    certificate: x509.Certificate
    renew_at: float
    context: ssl.SSLContext = field(repr=False)

    @property
    def not_after(self) -> float:
        return self.certificate.not_valid_after_utc.timestamp()

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")


def agent_id_of(certificate: x509.Certificate) -> str | None:
    """The agent id in an agent certificate's URI subjectAltName, or None."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    for uri in san.value.get_values_for_type(x509.UniformResourceIdentifier):
        match = _AGENT_URI.fullmatch(uri)
        if match:
            return match[1]
    return None


def _new_key(kind: str) -> PrivateKey:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _csr(key: PrivateKey) -> str:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    request = (
        x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, algorithm)
    )
    return request.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` with one rename; mode 0600 from creation."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


class Enrollment:
    """The agent's key, certificate and their renewal (module docstring).

    Args:
        settings: the proxy's settings.
        session: the HTTP client session (each request passes its own ``ssl`` context).
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        settings: ProxySettings,
        session: aiohttp.ClientSession,
        *,
        clock: Any = time.time,
    ) -> None:
        self._settings = settings
        self._session = session
        self._clock = clock
        self._key_path = settings.state_dir / "tls.key"
        self._cert_path = settings.state_dir / "tls.crt"
        self._trust = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca_file)
        )
        self.agent_id: str | None = None
        self._api_key: str | None = None
        self.held: Held | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.issued = 0

    # --- state -------------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        """A client context trusting the approver's CA and presenting the state folder's key
        and certificate."""
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self._settings.ca_file)
        )
        context.load_cert_chain(self._cert_path, self._key_path)
        return context

    def load(self) -> None:
        """Take up a certificate left in the state folder by an earlier run, if it is still
        valid (its agent id with it)."""
        try:
            cert_pem = self._cert_path.read_bytes()
            certificate = x509.load_pem_x509_certificate(cert_pem)
        except (OSError, ValueError):
            return
        if certificate.not_valid_after_utc.timestamp() <= self._clock():
            return
        try:
            context = self._context()
        except (ssl.SSLError, OSError):
            return
        self.agent_id = agent_id_of(certificate)
        before = certificate.not_valid_before_utc.timestamp()
        after = certificate.not_valid_after_utc.timestamp()
        self.held = Held(certificate, before + (after - before) * 2 / 3, context)
        log.info("using the certificate of an earlier run: serial %s", self.held.serial)

    @property
    def trust(self) -> ssl.SSLContext:
        """A TLS client context for the approver that presents no certificate (registrations
        need none)."""
        return self._trust

    @property
    def context(self) -> ssl.SSLContext:
        """The TLS client context for the approver: with the certificate while it is valid."""
        held = self.held
        if held is not None and held.not_after > self._clock():
            return held.context
        return self._trust

    def learn(self, *, agent_id: str, api_key: str) -> None:
        """The agent's id and key, from an approved registration answer (memory only);
        :meth:`ensure` then enrolls with them."""
        self.agent_id = agent_id
        self._api_key = api_key

    async def certificate_refused(self) -> bool:
        """True when the approver refuses the certificate held in the TLS handshake while it
        answers without it: ``GET /healthz`` on a new connection with it fails at the
        connection, and without it gets an answer. An approver that is merely unreachable or
        restarting fails both ways (False: the certificate is kept)."""
        if self.held is None:
            return False

        async def probe(context: ssl.SSLContext) -> bool:
            try:
                async with self._session.get(
                    self._settings.upstream_url + "/healthz",
                    ssl=context,
                    headers={"Connection": "close"},
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as answer:
                    await answer.read()
                    return True
            except (aiohttp.ClientError, TimeoutError, OSError):
                return False

        return not await probe(self.held.context) and await probe(self._trust)

    def discard(self) -> None:
        """Stop presenting the certificate held (the approver refused a connection with it:
        revoked or superseded); the next approved registration enrolls again with the key."""
        if self.held is not None:
            log.warning("the approver refused certificate %s; enrolling again", self.held.serial)
        self.held = None
        # Off the state folder too: a restarted proxy must not take it up again.
        for path in (self._cert_path, self._key_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # --- requests ----------------------------------------------------------------------------

    async def enroll(self, *, with_key: bool) -> Held:
        """Request a certificate: with the agent's key, or with the certificate held.

        Raises:
            EnrollmentError: no agent id or credential yet, or the approver did not issue one.
        """
        async with self._lock:
            if with_key and self._current():
                assert self.held is not None
                return self.held  # enrolled meanwhile (one lock holder did it)
            agent_id = self.agent_id
            if agent_id is None:
                raise EnrollmentError("the agent id is not known yet")
            headers = {}
            if with_key:
                if self._api_key is None:
                    raise EnrollmentError("the agent's key is not known yet")
                headers[KEY_HEADER] = self._api_key
                context = self._trust
            else:
                if self.held is None:
                    raise EnrollmentError("no certificate to renew with")
                context = self.held.context
            key = _new_key(self._settings.key_type)
            url = self._settings.upstream_url + CERTIFICATE_PATH.format(
                agent_id=quote(agent_id, safe="")
            )
            try:
                async with self._session.post(
                    url,
                    json={"csr": _csr(key)},
                    headers=headers,
                    ssl=context,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as answer:
                    body = await answer.json(content_type=None)
                    status = answer.status
            except (aiohttp.ClientSSLError, aiohttp.ServerDisconnectedError) as exc:
                if not with_key:
                    raise  # the caller tells a refused certificate from an unreachable approver
                raise EnrollmentError(f"certificate request failed: {type(exc).__name__}") from None
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                raise EnrollmentError(f"certificate request failed: {type(exc).__name__}") from None
            if status != 200 or not isinstance(body, dict):
                code = body.get("error") if isinstance(body, dict) else None
                raise EnrollmentError(f"certificate request answered {status} {code}")
            try:
                cert_pem = str(body["certificate"]).encode("ascii")
                certificate = x509.load_pem_x509_certificate(cert_pem)
                renew_at = (
                    datetime.fromisoformat(str(body["renewAfter"])).astimezone(UTC).timestamp()
                )
            except (KeyError, ValueError, UnicodeError):
                raise EnrollmentError(
                    "certificate request answered 200 without a certificate"
                ) from None
            if certificate.public_key() != key.public_key():
                raise EnrollmentError("the certificate answered is not for the key sent")
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            self._settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            _write(self._key_path, key_pem)
            _write(self._cert_path, cert_pem)
            self.held = Held(certificate, renew_at, self._context())
            self.issued += 1
            log.info(
                "certificate %s for %s: serial %s, notAfter %s",
                "renewed" if not with_key else "issued",
                agent_id,
                self.held.serial,
                body.get("notAfter"),
            )
            return self.held

    async def ensure(self) -> None:
        """Enroll with the key now unless a valid certificate is held (the registration path:
        the agent's next step is its WebSocket). Failures are logged, not raised."""
        if self._current():
            return
        try:
            await self.enroll(with_key=True)
        except EnrollmentError as exc:
            log.warning("%s", exc)
            self._wake.set()  # the renewal loop retries

    def _current(self) -> bool:
        """A certificate of this agent is held and not yet due for renewal."""
        held = self.held
        return (
            held is not None
            and held.renew_at > self._clock()
            and agent_id_of(held.certificate) == self.agent_id
        )

    async def run(self) -> None:
        """Renew at ``renewAfter`` forever (a background task; module docstring)."""
        delay = self._settings.retry_seconds
        while True:
            held = self.held
            now = self._clock()
            if held is not None and held.renew_at > now:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=held.renew_at - now)
                continue
            if self.agent_id is None or (held is None and self._api_key is None):
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                if held is not None and held.not_after > now:
                    try:
                        await self.enroll(with_key=False)
                    except EnrollmentError:
                        if self._api_key is None:
                            raise
                        await self.enroll(with_key=True)
                    except REFUSED:
                        if not await self.certificate_refused():
                            raise EnrollmentError("the approver is unreachable") from None
                        # Refused in the handshake (its CA left the approver's trust
                        # bundle): it can never renew itself.
                        self.discard()
                        raise EnrollmentError(
                            "the approver refused the certificate in the TLS handshake"
                        ) from None
                else:
                    await self.enroll(with_key=True)
                delay = self._settings.retry_seconds
            except Exception as exc:
                if isinstance(exc, EnrollmentError):
                    log.warning("%s; again in %.0f s", exc, delay)
                else:
                    log.exception("certificate renewal failed; again in %.0f s", delay)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                delay = min(delay * 2, self._settings.max_retry_seconds)
