"""Certificate and key builders: pure functions that return PEM bytes (no file I/O).

Every extension is spelled out with its critical flag chosen on purpose (RFC 5280 section 4.2):

| certificate | BasicConstraints (crit.) | KeyUsage (crit.)     | ExtendedKeyUsage | SAN       |
|-------------|--------------------------|----------------------|------------------|-----------|
| CA          | ca=True, pathlen=0       | keyCertSign, cRLSign | none             | none      |
| serving     | ca=False                 | digitalSignature     | serverAuth       | DNS, IP   |
| client      | ca=False                 | digitalSignature     | clientAuth       | none      |

EKU and SAN are not critical (SAN is critical only with an empty subject, RFC 5280 4.2.1.6).
Keys are ECDSA P-256: accepted by every Kubernetes API server and cheap in the TLS handshake.
``pathlen=0`` means the CA can sign leaves only, never another CA. Serving certificates carry
their names in subjectAltName (RFC 6125; Go's TLS stack, hence the API server, ignores the CN).
Client certificates (the API server's, for the webhook's ``tlsClientCaFile``) are identified by
their CN and the CA that signed them; they need no SAN.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bootstrap_token.x509_profiles import CA_KEY_USAGE, LEAF_KEY_USAGE

#: Backdating of notBefore, so a client whose clock runs a little behind still accepts.
CLOCK_SKEW = timedelta(minutes=5)
#: CN of the CA ``init`` makes (``rotate-ca`` appends the time, see certs_tooling.rotation).
CA_COMMON_NAME = "agent-bootstrap-ca"


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key, both PEM. ``repr`` never shows the key."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("expected an EC private key")
        return key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(*, common_name: str, valid_days: int, now: datetime) -> Issued:
    """A self-signed CA that may sign leaf certificates only (``pathlen=0``).

    Args:
        common_name: subject and issuer CN, e.g. ``agent-bootstrap-ca``.
        valid_days: lifetime in days from ``now`` (the CLI default is 5 years).
        now: timezone-aware current time.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names a Service is reached by inside a cluster: ``svc``, ``svc.ns``, ``svc.ns.svc``,
    ``svc.ns.svc.cluster.local`` (Kubernetes "DNS for Services and Pods")."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def make_serving_cert(
    *,
    ca: Issued,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    valid_days: int,
    now: datetime,
) -> Issued:
    """A TLS server certificate signed by ``ca`` for ``dns_names`` and ``ip_addresses``.

    The CN is the first DNS name (informational only). Validity never exceeds the CA's.

    Raises:
        ValueError: no names, or an IP address that does not parse.
    """
    if not dns_names and not ip_addresses:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    return _leaf(
        ca=ca,
        common_name=dns_names[0] if dns_names else ip_addresses[0],
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=sans,
        valid_days=valid_days,
        now=now,
    )


def make_client_cert(*, ca: Issued, common_name: str, valid_days: int, now: datetime) -> Issued:
    """A TLS client certificate (EKU clientAuth only) for ``common_name``, signed by ``ca``.

    No subjectAltName: a client is identified by its CN and its issuer. Validity never exceeds
    the CA's.

    Raises:
        ValueError: an empty ``common_name``.
    """
    if not common_name:
        raise ValueError("a client certificate needs a common name")
    return _leaf(
        ca=ca,
        common_name=common_name,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        sans=None,
        valid_days=valid_days,
        now=now,
    )


def _leaf(
    *,
    ca: Issued,
    common_name: str,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None,
    valid_days: int,
    now: datetime,
) -> Issued:
    """An end-entity certificate signed by ``ca``: a new P-256 key, digitalSignature only, the
    one extended key usage ``usage``, ``sans`` when given, validity capped at the CA's."""
    ca_cert = ca.certificate
    ca_key = ca.private_key()
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + timedelta(days=valid_days), ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            LEAF_KEY_USAGE,
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = (
        builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))
