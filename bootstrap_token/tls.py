"""A serving certificate as both services use it: load a certificate/key pair, check it, swap it
live.

Each file is checked on its own first, so that a bad file is reported by its settings field,
then the pair is checked to match (the leaf's public key is the key's), so a half-updated pair is
refused instead of being served. Errors are :class:`~bootstrap_token.reload.MaterialError`
naming the field and the path, never key bytes.

Rotation (after controller-runtime's ``certwatcher``, which swaps behind
``tls.Config.GetCertificate``): every load builds a *fresh* :class:`ssl.SSLContext` into an
immutable :class:`TlsMaterial`. The listening socket keeps the first context, whose
``sni_callback`` moves each new handshake onto the current material's context
(``ssl_object.context = ...``, Python ``ssl`` docs, ``SSLContext.sni_callback``). OpenSSL calls
it on every ClientHello, with or without SNI. Established connections keep the context they
were accepted with, so in-flight requests finish on the old certificate.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from bootstrap_token.reload import MaterialError

#: Hex digits of the leaf's SHA-256 fingerprint shown in log lines.
FINGERPRINT_PREFIX = 16


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where a serving certificate comes from: ``pem`` alone, or ``cert`` + ``key``.

    ``client_ca``, when set, is a PEM bundle of the CAs that sign the clients' certificates:
    every handshake must then present one that chains to them (see :func:`load_tls`). With
    ``client_ca_optional`` a client may also present none (OpenSSL ``SSL_VERIFY_PEER`` without
    ``FAIL_IF_NO_PEER_CERT``: the approver's port, where agents register before they hold a
    certificate); one it presents must still chain to them, or the handshake fails.

    ``cert_field``, ``key_field``, ``pem_field`` and ``client_ca_field`` name the settings
    fields in error messages (from settings: where each was set, e.g. ``tlsCertFile (config file
    /etc/webhook.yaml)``).
    """

    cert: Path | None = None
    key: Path | None = None
    pem: Path | None = None
    client_ca: Path | None = None
    client_ca_optional: bool = False
    cert_field: str = field(default="tlsCertFile", compare=False)
    key_field: str = field(default="tlsKeyFile", compare=False)
    pem_field: str = field(default="tlsPemFile", compare=False)
    client_ca_field: str = field(default="tlsClientCaFile", compare=False)

    @property
    def paths(self) -> tuple[Path, ...]:
        """The files to watch."""
        served = (self.pem,) if self.pem is not None else (self.cert, self.key)
        return tuple(p for p in (*served, self.client_ca) if p is not None)


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """One loaded serving certificate. Immutable: a rotation builds a new one.

    Attributes:
        context: server context (TLS 1.2+) holding this certificate chain and key.
        serial: the leaf certificate's serial number.
        not_before: the leaf's notBefore, seconds since the epoch.
        not_after: the leaf's notAfter, seconds since the epoch.
        digest: SHA-256 over the file contents, to tell a real change from a touch.
        subject: the leaf's subject, RFC 4514 (``CN=...``).
        sha256: the leaf's SHA-256 fingerprint (over its DER), lowercase hex.
    """

    context: ssl.SSLContext = field(repr=False)
    serial: int
    not_before: float
    not_after: float
    digest: bytes = field(repr=False)
    subject: str
    sha256: str


def describe_certificate(material: TlsMaterial) -> str:
    """The public facts of ``material`` for one log line: subject, notAfter (UTC), serial (hex)
    and the first :data:`FINGERPRINT_PREFIX` hex digits of the SHA-256 fingerprint."""
    not_after = datetime.datetime.fromtimestamp(material.not_after, datetime.UTC)
    return (
        f"subject={material.subject} notAfter={not_after:%Y-%m-%dT%H:%M:%SZ} "
        f"serial={material.serial:x} sha256={material.sha256[:FINGERPRINT_PREFIX]}"
    )


def _read(path: Path, *, field_name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MaterialError(
            f"{field_name} {path}: cannot read: {exc.strerror or type(exc).__name__}"
        ) from None


def _public_der(key: object) -> bytes:
    public = key.public_key()  # type: ignore[attr-defined]
    der: bytes = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def new_server_context() -> ssl.SSLContext:
    """An empty server context: TLS 1.2 or newer, no client certificates requested."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def load_tls(files: TlsFiles) -> TlsMaterial:
    """Read, check and load the serving certificate chain and key.

    Args:
        files: ``pem`` (chain + key in one file) or ``cert`` (chain, leaf first) + ``key``.

    Returns:
        The material with a fresh server context.

    Raises:
        MaterialError: a file is unreadable, not PEM of the right type, the key does not match
            the leaf certificate, the leaf is expired or not valid yet, or the files changed
            while being loaded (``transient``); the message names ``tlsPemFile``,
            ``tlsCertFile`` or ``tlsKeyFile`` (as ``files`` labels them) and the path, never
            key bytes.
    """
    if files.pem is not None:
        cert_path = key_path = files.pem
        cert_field = key_field = files.pem_field
        cert_pem = key_pem = _read(files.pem, field_name=cert_field)
    else:
        if files.cert is None or files.key is None:
            raise MaterialError("tlsCertFile and tlsKeyFile (or tlsPemFile) are required")
        cert_path, key_path = files.cert, files.key
        cert_field, key_field = files.cert_field, files.key_field
        cert_pem = _read(cert_path, field_name=cert_field)
        key_pem = _read(key_path, field_name=key_field)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise MaterialError(f"{cert_field} {cert_path}: not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise MaterialError(f"{key_field} {key_path}: not an unencrypted PEM private key") from None
    leaf = chain[0]
    if _public_der(leaf) != _public_der(key):
        raise MaterialError(
            f"{key_field} {key_path}: does not match the certificate in {cert_field} {cert_path}"
        )
    _check_validity(leaf, cert_field, cert_path)
    context = new_server_context()
    try:
        # The ssl module loads only from files, so the files are read a second time here; the
        # digest check below makes sure that OpenSSL loaded the bytes checked above.
        context.load_cert_chain(
            certfile=cert_path, keyfile=None if files.pem is not None else key_path
        )
        again = (
            _read(cert_path, field_name=cert_field),
            _read(key_path, field_name=key_field),
        )
    except (ssl.SSLError, OSError, MaterialError):
        raise MaterialError(
            f"{cert_field} {cert_path}: changed while being loaded", transient=True
        ) from None
    if again != (cert_pem, key_pem):
        raise MaterialError(f"{cert_field} {cert_path}: changed while being loaded", transient=True)
    client_ca_pem = b""
    if files.client_ca is not None:
        client_ca_pem = _require_clients(
            context, files.client_ca, files.client_ca_field, optional=files.client_ca_optional
        )
    return TlsMaterial(
        context=context,
        serial=leaf.serial_number,
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(),
        digest=hashlib.sha256(cert_pem + b"\0" + key_pem + b"\0" + client_ca_pem).digest(),
        subject=leaf.subject.rfc4514_string(),
        sha256=leaf.fingerprint(hashes.SHA256()).hex(),
    )


#: Seconds a certificate's notBefore may lie in the future (clocks of the issuer and of this
#: host disagree a little).
NOT_BEFORE_SKEW_SECONDS = 300


def _check_validity(leaf: x509.Certificate, field_name: str, path: Path) -> None:
    """Refuse a leaf outside its validity period (RFC 5280 section 4.1.2.5): served, it fails
    every client's handshake, so the material in use (on a reload) is better kept, and a start
    better stops with the reason than serves certificate errors.

    Raises:
        MaterialError: expired, or not valid yet (beyond :data:`NOT_BEFORE_SKEW_SECONDS`).
    """
    now = time.time()
    not_after = leaf.not_valid_after_utc
    not_before = leaf.not_valid_before_utc
    if now > not_after.timestamp():
        raise MaterialError(f"{field_name} {path}: expired at {not_after.isoformat()}")
    if now + NOT_BEFORE_SKEW_SECONDS < not_before.timestamp():
        raise MaterialError(f"{field_name} {path}: not valid before {not_before.isoformat()}")


def _require_clients(
    context: ssl.SSLContext, path: Path, field_name: str, *, optional: bool = False
) -> bytes:
    """Make ``context`` require a client certificate chaining to the CAs in ``path`` (with
    ``optional``: ask for one, accept none, verify one presented; ``ssl.CERT_OPTIONAL``).

    Kubernetes "Dynamic Admission Control", "Authenticate apiservers": the API server presents
    a client certificate to a webhook when its ``AdmissionConfiguration`` gives it one for the
    webhook's host name. With this, a request can come only from such a client: anyone else
    fails the handshake.

    Returns:
        The CA bundle as read (part of the material's digest, so a CA change is a reload).

    Raises:
        MaterialError: the file is unreadable or holds no PEM certificate.
    """
    pem = _read(path, field_name=field_name)
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise MaterialError(f"{field_name} {path}: not a PEM certificate bundle") from None
    context.verify_mode = ssl.CERT_OPTIONAL if optional else ssl.CERT_REQUIRED
    # No session resumption where clients are verified: a resumed session skips the chain check,
    # so a client whose CA left the bundle since would still get in (TLS 1.3 tickets, TLS 1.2
    # tickets; the server-side session-ID cache dies with this context at the next reload).
    context.num_tickets = 0
    context.options |= ssl.OP_NO_TICKET
    # From the bytes just checked (cadata), not the path, which could change in between.
    context.load_verify_locations(cadata=pem.decode("ascii", errors="replace"))
    return pem


def swapping_context(
    initial: TlsMaterial, current: Callable[[], TlsMaterial | None]
) -> ssl.SSLContext:
    """The listening socket's context: serves ``current()``'s certificate on each handshake.

    Python ``ssl`` docs, ``SSLContext.sni_callback``: the callback runs during the handshake,
    on every ClientHello (with or without SNI), and may set ``ssl_object.context`` to another
    server context, whose certificate and key that connection then uses.

    Args:
        initial: the material loaded at start; its context becomes the listener's.
        current: returns the material to serve now (read once per handshake).

    Returns:
        ``initial.context`` with an ``sni_callback`` that switches each new connection to
        ``current().context`` when that is another context. Connections already established
        keep theirs.
    """

    def select(ssl_object: ssl.SSLObject, server_name: str | None, base: ssl.SSLContext) -> None:
        material = current()
        if material is not None and material.context is not base:
            ssl_object.context = material.context

    context = initial.context
    context.sni_callback = select
    return context
