"""The agent CA the approver signs agent certificates with (``agentCertificates.caCertFile`` +
``caKeyFile``), followed on disk like the serving certificate (:mod:`approver.files.serving_tls`).

``certs-tooling agent-ca rotate`` (or cert-manager re-issuing the CA Secret) replaces both files;
every ``tlsReloadIntervalSeconds`` they are looked at (:mod:`bootstrap_token.reload`), and a
changed pair is checked in full before it signs anything: the key matches the certificate, the
certificate is a CA allowed to sign certificates (BasicConstraints ``ca=True`` and KeyUsage
``keyCertSign``, RFC 5280 sections 4.2.1.9 and 4.2.1.3) and is inside its validity. Unusable files
leave the CA in use in place (one ERROR line naming the field and path). Which CAs the gate
*trusts* is the serving TLS context's business (``agentCertificates.trustBundleFile``, loaded with
the serving certificate), so old certificates keep working through a rotation's overlap.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from approver.domain.agent_certificates import SigningKey
from bootstrap_token.reload import (
    MaterialError,
    MaterialMissing,
    ReloadCounts,
    ReloadResult,
    Watched,
    poll,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentCa:
    """One loaded agent CA. Immutable: a rotation loads a new one.

    Attributes:
        certificate: the CA certificate.
        key: its private key (ECDSA P-256/P-384 or Ed25519). Never rendered.
        sha256: SHA-256 hex over the certificate's DER (``issuer_sha256`` of what it signs).
        digest: SHA-256 over both files' bytes (a real change vs a touch).
    """

    certificate: x509.Certificate
    key: SigningKey = field(repr=False)
    sha256: str
    digest: bytes = field(repr=False)

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()


def describe(ca: AgentCa) -> str:
    """Public facts for one log line: subject, notAfter, SHA-256 prefix."""
    return (
        f"subject={ca.subject} "
        f"notAfter={ca.certificate.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ} "
        f"sha256={ca.sha256[:16]}"
    )


def _read(path: Path, field_name: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MaterialMissing(f"{field_name} {path}: does not exist") from None
    except OSError as exc:
        raise MaterialError(
            f"{field_name} {path}: cannot read: {exc.strerror or type(exc).__name__}"
        ) from None


def _spki(key: object) -> bytes:
    der: bytes = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def load_agent_ca(
    cert_path: Path,
    key_path: Path,
    *,
    cert_field: str = "agentCertificates.caCertFile",
    key_field: str = "agentCertificates.caKeyFile",
) -> AgentCa:
    """Read and check the agent CA (module docstring).

    Raises:
        MaterialError: a file is unreadable or not PEM of the right kind, the key does not
            match, the certificate is not a CA that may sign certificates, or it is outside its
            validity. The message names the field and the path, never key bytes.
    """
    cert_pem = _read(cert_path, cert_field)
    key_pem = _read(key_path, key_field)
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise MaterialError(f"{cert_field} {cert_path}: not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise MaterialError(f"{key_field} {key_path}: not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise MaterialError(f"{key_field} {key_path}: not an ECDSA or Ed25519 key")
    if _spki(key.public_key()) != _spki(certificate.public_key()):
        raise MaterialError(
            f"{key_field} {key_path}: does not match the certificate in {cert_field} {cert_path}"
        )
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        constraints, usage = None, None
    if constraints is None or usage is None or not constraints.ca or not usage.key_cert_sign:
        raise MaterialError(
            f"{cert_field} {cert_path}: not a CA certificate (BasicConstraints ca=True and "
            "KeyUsage keyCertSign are required)"
        )
    now = time.time()
    if not (
        certificate.not_valid_before_utc.timestamp() - 300
        <= now
        < certificate.not_valid_after_utc.timestamp()
    ):
        raise MaterialError(f"{cert_field} {cert_path}: outside its validity period")
    return AgentCa(
        certificate=certificate,
        key=key,
        sha256=certificate.fingerprint(hashes.SHA256()).hex(),
        digest=hashlib.sha256(cert_pem + b"\0" + key_pem).digest(),
    )


class SigningCa:
    """The agent CA in use and the files it comes from.

    Raises:
        MaterialError: the files cannot be used at start.
    """

    def __init__(
        self,
        cert_path: Path,
        key_path: Path,
        *,
        cert_field: str = "agentCertificates.caCertFile",
        key_field: str = "agentCertificates.caKeyFile",
        counts: ReloadCounts | None = None,
    ) -> None:
        def load() -> AgentCa:
            return load_agent_ca(cert_path, key_path, cert_field=cert_field, key_field=key_field)

        self.current: AgentCa = load()
        self.counts = counts if counts is not None else ReloadCounts()
        self._watched: Watched[AgentCa] = Watched(
            name="agent_ca",
            paths=(cert_path, key_path),
            load=load,
            current=lambda: self.current,
            install=self._install,
            describe=describe,
            on_result=self.counts.record,
            logger=log,
        )

    def _install(self, ca: AgentCa) -> None:
        self.current = ca

    def check(self) -> ReloadResult | None:
        """Look at the files once (:meth:`bootstrap_token.reload.Watched.check`)."""
        return self._watched.check()

    async def follow(self, interval: float) -> None:
        """:meth:`check` every ``interval`` seconds until cancelled."""
        await poll(self.check, interval, logger=log)
