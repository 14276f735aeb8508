"""Test helpers for agent certificates: an agent CA on disk, CSRs, client TLS contexts."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from certs_tooling.pki import Issued, make_ca

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class CaFiles:
    """An agent CA written to ``cert``/``key``."""

    issued: Issued
    cert: Path
    key: Path

    @property
    def certificate(self) -> x509.Certificate:
        return self.issued.certificate


def write_ca(folder: Path, *, name: str = "agent-bootstrap-agent-ca", days: int = 30) -> CaFiles:
    folder.mkdir(parents=True, exist_ok=True)
    issued = make_ca(common_name=name, valid_days=days, now=datetime.now(UTC))
    cert, key = folder / "ca.crt", folder / "ca.key"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem)
    key.chmod(0o600)
    return CaFiles(issued, cert, key)


def new_key(kind: str = "ed25519") -> PrivateKey:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def csr_pem(
    key: PrivateKey,
    *,
    cn: str | None = None,
    extensions: list[tuple[x509.ExtensionType, bool]] = (),  # type: ignore[assignment]
) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def client_context(
    server_ca: Path, cert_pem: str | bytes | None, key: PrivateKey | None, folder: Path
) -> ssl.SSLContext:
    """Trusts ``server_ca``; presents ``cert_pem`` + ``key`` when given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(server_ca))
    if cert_pem is not None and key is not None:
        folder.mkdir(parents=True, exist_ok=True)
        data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
        cert_path = folder / f"client-{id(key)}.crt"
        key_path = folder / f"client-{id(key)}.key"
        cert_path.write_bytes(data)
        key_path.write_bytes(key_pem(key))
        context.load_cert_chain(cert_path, key_path)
    return context


def sign_leaf(
    ca: Issued,
    public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey,
    *,
    uri: str,
    usage: x509.ObjectIdentifier,
    not_before: datetime,
    not_after: datetime,
) -> bytes:
    """A leaf of our own making (for certificates the approver would never issue)."""
    ca_key = ca.private_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


ONE_DAY = timedelta(days=1)
