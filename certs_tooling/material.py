"""Reading certificates and keys from a folder, with errors that name the file.

Thin I/O over :mod:`certs_tooling.certinfo`; every failure is a
:class:`~certs_tooling.errors.MaterialError`.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from certs_tooling.certinfo import load_cert, load_issued
from certs_tooling.errors import MaterialError
from certs_tooling.pki import Issued


def read_bytes(path: Path) -> bytes:
    """The bytes of ``path``. Raises MaterialError naming the file when it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MaterialError(f"{path} is missing") from None
    except OSError as exc:
        raise MaterialError(f"cannot read {path}: {exc.strerror}") from None


def read_cert(path: Path) -> x509.Certificate:
    """The first certificate in ``path``. Raises MaterialError."""
    try:
        return load_cert(read_bytes(path))
    except ValueError as exc:
        raise MaterialError(f"{path}: {exc}") from None


def read_issued(cert_path: Path, key_path: Path) -> Issued:
    """A certificate and its key, checked to belong together. Raises MaterialError."""
    cert_pem, key_pem = read_bytes(cert_path), read_bytes(key_path)
    try:
        return load_issued(cert_pem, key_pem)
    except ValueError as exc:
        raise MaterialError(f"{cert_path} / {key_path}: {exc}") from None
