"""The HTTPS listener's TLS material, as the webhook's settings name it.

Kubernetes calls admission webhooks over HTTPS only, verifying the serving certificate against
the ``caBundle`` of the webhook configuration ("Dynamic Admission Control", "Contacting the
webhook"). Loading, checking and the live swap are shared with the approver
(:mod:`bootstrap_token.tls`); this module names the files from :class:`WebhookSettings` and
makes a load failure a :class:`~webhook.config.ConfigError` (exit code 2 at start).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from bootstrap_token import reload as shared_reload
from bootstrap_token import tls as shared_tls
from bootstrap_token.tls import TlsFiles, TlsMaterial, new_server_context, swapping_context
from webhook.config import ConfigError, WebhookSettings

__all__ = [
    "MaterialError",
    "TlsFiles",
    "TlsMaterial",
    "load_tls",
    "new_server_context",
    "server_ssl_context",
    "swapping_context",
    "tls_files",
]


class MaterialError(ConfigError, shared_reload.MaterialError):
    """Key or certificate files that cannot be used. The message names the settings field and
    the path, never file contents.

    ``transient`` marks a failure that may pass by itself (the files changed while being read).
    """


def tls_files(settings: WebhookSettings) -> TlsFiles:
    """The serving certificate's files of ``settings``, each labelled where it was set."""
    return TlsFiles(
        cert=settings.tls_cert_file,
        key=settings.tls_key_file,
        pem=settings.tls_pem_file,
        cert_field=settings.describe_field("tlsCertFile"),
        key_field=settings.describe_field("tlsKeyFile"),
        pem_field=settings.describe_field("tlsPemFile"),
        client_ca=settings.tls_client_ca_file,
        client_ca_field=settings.describe_field("tlsClientCaFile"),
    )


def load_tls(files: TlsFiles) -> TlsMaterial:
    """Read, check and load the serving certificate chain and key
    (:func:`bootstrap_token.tls.load_tls`).

    Raises:
        MaterialError: as :func:`bootstrap_token.tls.load_tls` (field and path, never key
            bytes; ``transient`` kept), and a :class:`~webhook.config.ConfigError`.
    """
    try:
        return shared_tls.load_tls(files)
    except shared_reload.MaterialError as exc:
        raise MaterialError(str(exc), transient=exc.transient) from None


def server_ssl_context(*, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context (TLS 1.2+) for ``cert_file`` + ``key_file``, loaded once.

    Raises:
        MaterialError: see :func:`load_tls`.
    """
    return load_tls(TlsFiles(cert=cert_file, key=key_file)).context
