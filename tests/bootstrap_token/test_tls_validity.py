"""bootstrap_token.tls refuses a serving certificate outside its validity period (trial
finding: an expired certificate was reloaded as a success and then failed every handshake)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bootstrap_token.reload import MaterialError
from bootstrap_token.tls import TlsFiles, load_tls


def write_pair(tmp_path: Path, *, start: datetime.datetime, end: datetime.datetime) -> TlsFiles:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsFiles(cert=cert_path, key=key_path)


NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


def test_a_valid_certificate_loads(tmp_path: Path) -> None:
    material = load_tls(write_pair(tmp_path, start=NOW - DAY, end=NOW + DAY))
    assert material.not_after > NOW.timestamp()


def test_an_expired_certificate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MaterialError, match="expired at"):
        load_tls(write_pair(tmp_path, start=NOW - 2 * DAY, end=NOW - DAY))


def test_a_certificate_not_valid_yet_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MaterialError, match="not valid before"):
        load_tls(write_pair(tmp_path, start=NOW + DAY, end=NOW + 2 * DAY))


def test_a_few_minutes_of_clock_skew_are_allowed(tmp_path: Path) -> None:
    start = NOW + datetime.timedelta(minutes=2)
    assert load_tls(write_pair(tmp_path, start=start, end=NOW + DAY)).serial > 0
