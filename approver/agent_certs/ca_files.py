"""The agent CA the approver signs agent certificates with (``agentCertificates.caCertFile`` +
``caKeyFile``), followed on disk like the serving certificate (:mod:`approver.files.serving_tls`).

``certs-tooling agent-ca rotate`` (or cert-manager re-issuing the CA Secret) replaces both files;
every ``tlsReloadIntervalSeconds`` they are looked at (:mod:`bootstrap_token.reload`), and a
changed pair is checked in full before it signs anything: the key matches the certificate, the
certificate is a CA allowed to sign certificates (BasicConstraints ``ca=True`` and KeyUsage
``keyCertSign``, RFC 5280 sections 4.2.1.9 and 4.2.1.3) and is inside its validity. Unusable files
leave the CA in use in place (one ERROR line naming the field and path).

The trust bundle (``agentCertificates.trustBundleFile``) is read here too, and must hold the
signing CA (else every certificate issued would fail the handshake). The TLS layer verifies
presented certificates against the same file (it is loaded with the serving certificate); the
fingerprints read here let the gate check again that a certificate's issuer is still trusted, as
a resumed TLS session skips the chain check of a fresh handshake.
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
        trusted: SHA-256 hex of every CA in the trust bundle (the signing CA among them).
        digest: SHA-256 over the files' bytes (a real change vs a touch).
    """

    certificate: x509.Certificate
    key: SigningKey = field(repr=False)
    sha256: str
    trusted: frozenset[str]
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
    bundle_path: Path | None = None,
    *,
    cert_field: str = "agentCertificates.caCertFile",
    key_field: str = "agentCertificates.caKeyFile",
    bundle_field: str = "agentCertificates.trustBundleFile",
) -> AgentCa:
    """Read and check the agent CA and the trust bundle (module docstring; no bundle: the CA
    alone is trusted).

    Raises:
        MaterialError: a file is unreadable or not PEM of the right kind, the key does not
            match, the certificate is not a CA that may sign certificates, it is outside its
            validity, or the bundle does not hold it. The message names the field and the path,
            never key bytes.
    """
    cert_pem = _read(cert_path, cert_field)
    key_pem = _read(key_path, key_field)
    bundle_pem = _read(bundle_path, bundle_field) if bundle_path is not None else b""
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
    sha256 = certificate.fingerprint(hashes.SHA256()).hex()
    trusted = frozenset({sha256})
    if bundle_path is not None:
        try:
            bundle = x509.load_pem_x509_certificates(bundle_pem)
        except ValueError:
            raise MaterialError(
                f"{bundle_field} {bundle_path}: not a PEM certificate bundle"
            ) from None
        trusted = frozenset(c.fingerprint(hashes.SHA256()).hex() for c in bundle)
        if sha256 not in trusted:
            raise MaterialError(
                f"{bundle_field} {bundle_path}: does not hold the agent CA of {cert_field} "
                f"{cert_path} (every certificate it issued would fail the handshake)"
            )
    return AgentCa(
        certificate=certificate,
        key=key,
        sha256=sha256,
        trusted=trusted,
        digest=hashlib.sha256(cert_pem + b"\0" + key_pem + b"\0" + bundle_pem).digest(),
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
        bundle_path: Path | None = None,
        *,
        cert_field: str = "agentCertificates.caCertFile",
        key_field: str = "agentCertificates.caKeyFile",
        bundle_field: str = "agentCertificates.trustBundleFile",
        counts: ReloadCounts | None = None,
    ) -> None:
        def load() -> AgentCa:
            return load_agent_ca(
                cert_path,
                key_path,
                bundle_path,
                cert_field=cert_field,
                key_field=key_field,
                bundle_field=bundle_field,
            )

        self.current: AgentCa = load()
        self.counts = counts if counts is not None else ReloadCounts()
        self._watched: Watched[AgentCa] = Watched(
            name="agent_ca",
            paths=tuple(p for p in (cert_path, key_path, bundle_path) if p is not None),
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
