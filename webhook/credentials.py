"""The key material in use: the token signing key and the serving certificate, swappable.

:class:`Credentials` is the one mutable holder. It points at two immutable objects,
:class:`SigningMaterial` and :class:`~webhook.tls.TlsMaterial`; a rotation builds a new object
and swaps the reference (one attribute store, atomic for the event loop and for threads). A
review reads ``credentials.signing`` once at its start and signs with that object, so a review
in flight during a swap finishes on the key it started with.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bootstrap_token import KeyLoadError, SigningKey
from bootstrap_token import reload as shared_reload
from bootstrap_token.file_mode import mode_warning
from webhook.signer import TokenSigner
from webhook.tls import MaterialError, TlsMaterial

logger = logging.getLogger(__name__)


class MaterialMissing(MaterialError, shared_reload.MaterialMissing):
    """A key file that does not exist (as opposed to one that exists but cannot be used)."""


@dataclass(frozen=True, slots=True)
class SigningMaterial:
    """One loaded signing key. Immutable: a rotation builds a new one.

    Attributes:
        signer: signs tokens with the key (``signer.kid`` is its RFC 7638 thumbprint).
        mtime: the key file's modification time, seconds since the epoch (``signing_key_age``).
        digest: SHA-256 of the file contents, to tell a real change from a touch.
    """

    signer: TokenSigner
    mtime: float
    digest: bytes

    @property
    def kid(self) -> str:
        return self.signer.kid

    @classmethod
    def of(cls, key: SigningKey, *, mtime: float = 0.0) -> SigningMaterial:
        """Material for an already loaded key (tests, the demo)."""
        return cls(
            signer=TokenSigner.for_key(key),
            mtime=mtime,
            digest=hashlib.sha256(key.private_pem()).digest(),
        )


def load_signing(path: Path, *, field_name: str = "signingKeyFile") -> SigningMaterial:
    """Read ``signingKeyFile`` once: an unencrypted PKCS#8 PEM Ed25519 private key.

    Args:
        path: the key file.
        field_name: the field in error messages, e.g. ``settings.describe_field(
            "signingKeyFile")``: ``signingKeyFile (config file /etc/webhook.yaml)``.

    A key file open to other users than its owner (beyond what this process needs to read
    it, :mod:`bootstrap_token.file_mode`) is loaded, with a warning naming ``field_name``, the
    path and the mode.

    Raises:
        MaterialMissing: the file does not exist (yet: a Secret volume may be filled later).
        MaterialError: unreadable, or not an Ed25519 PEM private key; the message names
            ``field_name`` and the path, never key bytes.
    """
    try:
        data = path.read_bytes()
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        raise MaterialMissing(f"{field_name} {path}: not found") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise MaterialError(f"{field_name} {path}: cannot read: {reason}") from None
    try:
        key = SigningKey.from_pem(data)
    except KeyLoadError as exc:
        raise MaterialError(f"{field_name} {path}: {exc}") from None
    warning = mode_warning(field_name, path)
    if warning is not None:
        logger.warning("%s", warning)
    return SigningMaterial(
        signer=TokenSigner.for_key(key), mtime=mtime, digest=hashlib.sha256(data).digest()
    )


class Credentials:
    """The signing key and serving certificate in use; either may be None until loaded.

    Ready (``/readyz``) when both are loaded. Attributes are replaced, never mutated.
    """

    __slots__ = ("signing", "tls")

    def __init__(
        self, *, signing: SigningMaterial | None = None, tls: TlsMaterial | None = None
    ) -> None:
        self.signing = signing
        self.tls = tls

    @classmethod
    def with_key(cls, key: SigningKey | None) -> Credentials:
        """Credentials holding ``key`` (or nothing) and no certificate (tests, plain HTTP)."""
        return cls(signing=SigningMaterial.of(key) if key is not None else None)

    @property
    def ready(self) -> bool:
        """True when a signing key and a certificate are loaded."""
        return self.signing is not None and self.tls is not None

    def __repr__(self) -> str:
        kid = self.signing.kid if self.signing else None
        serial = self.tls.serial if self.tls else None
        return f"Credentials(kid={kid!r}, tls_serial={serial!r})"
