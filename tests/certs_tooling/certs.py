"""Shared test helpers: certificate assertions (exact extensions), real TLS handshakes, openssl,
and bootstrap tokens."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from bootstrap_token import BootstrapClaims, PodRef, SigningKey, mint, new_jti

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")

#: A fixed clock for tests that do not do TLS: 2025-01-01T00:00:00Z.
T0 = 1_735_689_600
DAY = 86_400


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_all(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def service_names(service: str, namespace: str) -> list[str]:
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def assert_is_ca(cert: x509.Certificate) -> None:
    """A pathlen-0 CA: critical basicConstraints and keyUsage keyCertSign + cRLSign only."""
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca
    assert bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign
    assert ku.value.crl_sign
    assert not ku.value.digital_signature
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)


def assert_is_serving_leaf(
    cert: x509.Certificate,
    ca: x509.Certificate,
    names: Sequence[str],
    ips: Sequence[str] = (),
) -> None:
    """A serverAuth leaf for exactly ``names`` (and ``ips``), signed by ``ca``."""
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert not bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert not ku.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == list(names)
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == list(ips)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)


# --- TLS -----------------------------------------------------------------------------------------


def client_context(cafile: Path) -> ssl.SSLContext:
    """A client that trusts only the certificates in ``cafile`` and checks the host name."""
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cafile))


async def handshake(
    cert: Path, key: Path, client: ssl.SSLContext, *, server_hostname: str = "localhost"
) -> bytes:
    """Serve ``cert``/``key`` on 127.0.0.1 and read one message through ``client``.

    Raises ssl.SSLCertVerificationError when the client refuses the certificate.
    """
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=server_hostname
        )
        try:
            return await reader.read()
        finally:
            writer.close()


# --- openssl and subprocess ----------------------------------------------------------------------


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], capture_output=True, text=True, check=False)


def openssl_verify(cafile: Path, cert: Path) -> str:
    """``openssl verify -purpose sslserver`` output (stdout + stderr, stripped)."""
    result = openssl("verify", "-CAfile", str(cafile), "-purpose", "sslserver", str(cert))
    return (result.stdout + result.stderr).strip()


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m certs_tooling ARGS`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "certs_tooling", *args],
        capture_output=True,
        text=True,
        input=stdin,
        check=False,
    )


# --- tokens --------------------------------------------------------------------------------------


def mint_token(key: SigningKey, *, now: int, ttl: int = 3600) -> str:
    """A bootstrap token signed by ``key`` at ``now`` with the CLI's default iss/aud."""
    claims = BootstrapClaims(
        iss="agent-bootstrap-webhook",
        aud="agent-approver",
        iat=now,
        nbf=now,
        exp=now + ttl,
        jti=new_jti(),
        cluster="test-cluster",
        namespace="streamspace",
        service_account="streamspace-agent",
        pod=PodRef(generate_name="streamspace-k8s-agent-7d9f8b6c5-"),
        admission_uid="3f1c2e6a-0000-4000-8000-000000000001",
    )
    return mint(claims, key, now=now)
