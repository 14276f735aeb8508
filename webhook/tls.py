"""The HTTPS listener's TLS material: load a certificate/key pair, check it, swap it live.

Kubernetes calls admission webhooks over HTTPS only, verifying the serving certificate against
the ``caBundle`` of the webhook configuration ("Dynamic Admission Control", "Contacting the
webhook"). Each file is checked on its own first so that a bad file is reported by its settings
field, then the pair is checked to match (the leaf's public key is the key's), so a half-updated
pair is refused instead of being served.

Rotation (after controller-runtime's ``certwatcher``, which swaps behind
``tls.Config.GetCertificate``): every load builds a *fresh* :class:`ssl.SSLContext` into an
immutable :class:`TlsMaterial`. The listening socket keeps the first context, whose
``sni_callback`` moves each new handshake onto the current material's context
(``ssl_object.context = ...``, Python ``ssl`` docs, ``SSLContext.sni_callback``). OpenSSL calls
it on every ClientHello, with or without SNI. Established connections keep the context they
were accepted with, so in-flight requests finish on the old certificate.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from webhook.config import ConfigError, WebhookSettings


class MaterialError(ConfigError):
    """Key or certificate files that cannot be used. The message names the settings field and
    the path, never file contents.

    ``transient`` marks a failure that may pass by itself (the files changed while being read).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where the serving certificate comes from: ``pem`` alone, or ``cert`` + ``key``.

    ``client_ca``, when set, is a PEM bundle of the CAs that sign the API server's client
    certificate: every handshake must then present one that chains to them (see
    :func:`load_tls`).

    ``cert_field``, ``key_field``, ``pem_field`` and ``client_ca_field`` name the settings
    fields in error messages (from settings: where each was set, e.g. ``tlsCertFile (config file
    /etc/webhook.yaml)``).
    """

    cert: Path | None = None
    key: Path | None = None
    pem: Path | None = None
    client_ca: Path | None = None
    cert_field: str = field(default="tlsCertFile", compare=False)
    key_field: str = field(default="tlsKeyFile", compare=False)
    pem_field: str = field(default="tlsPemFile", compare=False)
    client_ca_field: str = field(default="tlsClientCaFile", compare=False)

    @classmethod
    def from_settings(cls, settings: WebhookSettings) -> TlsFiles:
        return cls(
            cert=settings.tls_cert_file,
            key=settings.tls_key_file,
            pem=settings.tls_pem_file,
            cert_field=settings.describe_field("tlsCertFile"),
            key_field=settings.describe_field("tlsKeyFile"),
            pem_field=settings.describe_field("tlsPemFile"),
            client_ca=settings.tls_client_ca_file,
            client_ca_field=settings.describe_field("tlsClientCaFile"),
        )

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
    """

    context: ssl.SSLContext = field(repr=False)
    serial: int
    not_before: float
    not_after: float
    digest: bytes = field(repr=False)


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
            the leaf certificate, or the files changed while being loaded (``transient``); the
            message names ``tlsPemFile``, ``tlsCertFile`` or ``tlsKeyFile`` (as ``files``
            labels them) and the path, never key bytes.
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
        client_ca_pem = _require_clients(context, files.client_ca, files.client_ca_field)
    return TlsMaterial(
        context=context,
        serial=leaf.serial_number,
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(),
        digest=hashlib.sha256(cert_pem + b"\0" + key_pem + b"\0" + client_ca_pem).digest(),
    )


def _require_clients(context: ssl.SSLContext, path: Path, field_name: str) -> bytes:
    """Make ``context`` require a client certificate chaining to the CAs in ``path``.

    Kubernetes "Dynamic Admission Control", "Authenticate apiservers": the API server presents
    a client certificate to a webhook when its ``AdmissionConfiguration`` gives it one for the
    webhook's host name. With this, a review can come only from such a client: anyone else
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
    context.verify_mode = ssl.CERT_REQUIRED
    # From the bytes just checked (cadata), not the path, which could change in between.
    context.load_verify_locations(cadata=pem.decode("ascii", errors="replace"))
    return pem


def server_ssl_context(*, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context (TLS 1.2+) for ``cert_file`` + ``key_file``, loaded once.

    Raises:
        MaterialError: see :func:`load_tls`.
    """
    return load_tls(TlsFiles(cert=cert_file, key=key_file)).context


def swapping_context(
    initial: TlsMaterial, current: Callable[[], TlsMaterial | None]
) -> ssl.SSLContext:
    """The listening socket's context: serves ``current()``'s certificate on each handshake.

    Args:
        initial: the material loaded at start; its context becomes the listener's.
        current: returns the material to serve now (read once per handshake).

    Returns:
        ``initial.context`` with an ``sni_callback`` that switches each new connection to
        ``current().context`` when that is another context.
    """

    def select(ssl_object: ssl.SSLObject, server_name: str | None, base: ssl.SSLContext) -> None:
        material = current()
        if material is not None and material.context is not base:
            ssl_object.context = material.context

    context = initial.context
    context.sni_callback = select
    return context
