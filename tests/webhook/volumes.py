"""Test helpers: serving certificates from the test CA, and Secret volumes that swap like kubelet's.

A Secret mounted as a volume looks like this (kubelet ``AtomicWriter``)::

    vol/..2025_11_30_02_00_00.123/tls.crt     the files of one version
    vol/..data -> ..2025_11_30_02_00_00.123   swapped by one rename
    vol/tls.crt -> ..data/tls.crt             what the pod's config names

:meth:`SecretVolume.write` makes a new version folder and renames a fresh ``..data`` link over
the old one, so a reader sees either every old file or every new one, never a mix.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import os
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bootstrap_token.x509_profiles import LEAF_KEY_USAGE

_versions = itertools.count(1)


def issue_serving_cert(ca_cert: Path, ca_key: Path) -> tuple[bytes, bytes, int]:
    """A new localhost serving certificate signed by the CA in ``ca_cert``/``ca_key``.

    Returns:
        (certificate PEM, PKCS#8 key PEM, serial number).
    """
    issuer = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    serial = x509.random_serial_number()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rotated-webhook")]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            LEAF_KEY_USAGE,
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem, serial


class SecretVolume:
    """A folder laid out and updated the way the kubelet updates a Secret volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        """The path a pod's config names: ``<root>/<name>`` (a symlink into ``..data``)."""
        return self.root / name

    def write(self, files: dict[str, bytes]) -> None:
        """Publish a new version holding exactly ``files``, by one rename of ``..data``."""
        version = self.root / f"..{os.getpid()}_{next(_versions):04d}"
        version.mkdir()
        for name, data in files.items():
            (version / name).write_bytes(data)
            (version / name).chmod(0o600)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(version.name)
        data_link = self.root / "..data"
        old = data_link.resolve() if data_link.is_symlink() else None
        os.replace(tmp, data_link)
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
        if old is not None and old != version:
            shutil.rmtree(old)
