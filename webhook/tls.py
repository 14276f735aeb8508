"""The HTTPS listener's TLS context (server side, TLS 1.2 or newer).

Kubernetes calls admission webhooks over HTTPS only, verifying the serving certificate against
the ``caBundle`` of the webhook configuration ("Dynamic Admission Control", "Contacting the
webhook"). The certificate and key are checked one by one first so that a bad file is reported
by its settings field.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from webhook.config import ConfigError


def _read(path: Path, *, field: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{field} {path}: cannot read: {exc.strerror or type(exc).__name__}"
        ) from None


def server_ssl_context(*, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server :class:`ssl.SSLContext` with ``minimum_version`` TLS 1.2 and this cert chain.

    Args:
        cert_file: PEM certificate chain, leaf first (``tlsCertFile``).
        key_file: PEM private key of the leaf, unencrypted (``tlsKeyFile``).

    Returns:
        The context, ready for ``TCPSite(ssl_context=...)``. No client certificates requested.

    Raises:
        ConfigError: a file is unreadable, not PEM of the right type, or the key does not match
            the certificate; the message names ``tlsCertFile`` or ``tlsKeyFile`` (never key bytes).
    """
    cert_pem = _read(cert_file, field="tlsCertFile")
    key_pem = _read(key_file, field="tlsKeyFile")
    try:
        x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise ConfigError(f"tlsCertFile {cert_file}: not a PEM certificate") from None
    try:
        serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"tlsKeyFile {key_file}: not an unencrypted PEM private key") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=cert_file, keyfile=key_file)
    except (ssl.SSLError, OSError):
        raise ConfigError(
            f"tlsKeyFile {key_file}: does not match the certificate in tlsCertFile {cert_file}"
        ) from None
    return context
