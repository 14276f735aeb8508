"""Reading certificates and keys back: parse PEM, SANs, issuer and key matches. Pure, no I/O.

The questions :mod:`certs_tooling.check`, renewal and rotation ask of existing material.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs_tooling.pki import Issued


@dataclass(frozen=True, slots=True)
class SubjectNames:
    """The subjectAltName entries of a certificate (RFC 5280 section 4.2.1.6), in order."""

    dns: list[str]
    ips: list[str]

    def __bool__(self) -> bool:
        return bool(self.dns or self.ips)


def load_certs(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, in file order.

    Raises:
        ValueError: no certificate, or a certificate block that does not parse.
    """
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ValueError("not a PEM certificate (bundle)") from None
    return certs


def load_cert(pem: bytes) -> x509.Certificate:
    """The first certificate of ``pem`` (the leaf of a chain). Raises ValueError."""
    return load_certs(pem)[0]


def load_private_key(pem: bytes) -> PrivateKeyTypes:
    """An unencrypted PEM private key of any type.

    Raises:
        ValueError: not PEM, encrypted, or of a type :mod:`cryptography` does not support.
    """
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not an unencrypted PEM private key") from None


def load_issued(cert_pem: bytes, key_pem: bytes) -> Issued:
    """A certificate + key pair as :class:`~certs_tooling.pki.Issued`, checked to match.

    Raises:
        ValueError: either does not parse, or the key is not the certificate's.
    """
    cert = load_cert(cert_pem)
    key = load_private_key(key_pem)
    if not key_matches(cert, key):
        raise ValueError("the private key does not belong to the certificate")
    return Issued(cert_pem, key_pem)


def _spki(public_key: object) -> bytes:
    encode = getattr(public_key, "public_bytes", None)
    if encode is None:
        raise ValueError("not a public key")
    data = encode(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert isinstance(data, bytes)
    return data


def key_matches(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    """True when ``key`` is the private half of ``cert``'s subjectPublicKeyInfo."""
    return _spki(cert.public_key()) == _spki(key.public_key())


def subject_alt_names(cert: x509.Certificate) -> SubjectNames:
    """DNS and IP subjectAltName entries; empty when the extension is absent."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return SubjectNames(dns=[], ips=[])
    return SubjectNames(
        dns=list(san.get_values_for_type(x509.DNSName)),
        ips=[str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
    )


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True when ``ca``'s subject is ``cert``'s issuer and ``ca``'s key signed ``cert``.

    Checks the signature only (RFC 5280 section 6.1.3 (a)(1)-(4) for one step), not validity
    dates or extensions; those are separate checks.
    """
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def is_ca(cert: x509.Certificate) -> bool:
    """True when basicConstraints says ``cA`` and keyUsage allows ``keyCertSign``
    (RFC 5280 sections 4.2.1.9 and 4.2.1.3)."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return bc.ca and ku.key_cert_sign


def is_serving_leaf(cert: x509.Certificate) -> bool:
    """True for a non-CA certificate whose extendedKeyUsage includes ``serverAuth``
    (RFC 5280 section 4.2.1.12)."""
    return _is_leaf_for(cert, ExtendedKeyUsageOID.SERVER_AUTH)


def is_client_leaf(cert: x509.Certificate) -> bool:
    """True for a non-CA certificate whose extendedKeyUsage includes ``clientAuth``
    (RFC 5280 section 4.2.1.12)."""
    return _is_leaf_for(cert, ExtendedKeyUsageOID.CLIENT_AUTH)


def _is_leaf_for(cert: x509.Certificate, usage: x509.ObjectIdentifier) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return not bc.ca and usage in eku


def short_fingerprint(cert: x509.Certificate) -> str:
    """The first 16 hex digits of the certificate's SHA-256 fingerprint, colon-free."""
    return cert.fingerprint(hashes.SHA256()).hex()[:16]


def seconds_left(cert: x509.Certificate, now: datetime) -> float:
    """Seconds from ``now`` (timezone-aware) to notAfter; negative once expired."""
    return (cert.not_valid_after_utc - now).total_seconds()


def common_name(cert: x509.Certificate) -> str:
    """The subject CN, or the whole subject when it has no CN."""
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if cns:
        value = cns[0].value
        return value if isinstance(value, str) else value.decode()
    return cert.subject.rfc4514_string()
