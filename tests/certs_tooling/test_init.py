"""``certs-tooling init``: what it writes, with which extensions, and that TLS works with it."""

from __future__ import annotations

import asyncio
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from bootstrap_token import KeySet, SigningKey
from certs_tooling.cli import main
from certs_tooling.layout import Layout
from tests.conftest import Pki


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def assert_is_ca(cert: x509.Certificate) -> None:
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca
    assert bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign
    assert ku.value.crl_sign
    assert not ku.value.digital_signature


def assert_is_serving_leaf(cert: x509.Certificate, ca: x509.Certificate, names: list[str]) -> None:
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
    assert san.value.get_values_for_type(x509.DNSName) == names
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)


class TestInit:
    def test_writes_every_file_with_private_keys_0600(self, tmp_path: Path) -> None:
        """All eight files exist; private keys are 0600 and public files 0644."""
        out = tmp_path / "pki"
        assert main(["init", "--out", str(out)]) == 0
        layout = Layout(out)
        private = {layout.ca_key, layout.webhook_key, layout.approver_key, layout.signing_key}
        for path in layout.all_files():
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o600 if path in private else 0o644), path.name

    def test_certificates_have_the_exact_extensions(self, tmp_path: Path) -> None:
        """The CA is a pathlen-0 CA; each serving certificate is a serverAuth leaf for its
        Service's four DNS names."""
        assert main(["init", "--out", str(tmp_path), "--namespace", "ops"]) == 0
        layout = Layout(tmp_path)
        ca = load(layout.ca_cert)
        assert_is_ca(ca)
        svc = "agent-bootstrap-webhook"
        assert_is_serving_leaf(
            load(layout.webhook_cert),
            ca,
            [svc, f"{svc}.ops", f"{svc}.ops.svc", f"{svc}.ops.svc.cluster.local"],
        )
        app = "agent-bootstrap-approver"
        assert_is_serving_leaf(
            load(layout.approver_cert),
            ca,
            [app, f"{app}.ops", f"{app}.ops.svc", f"{app}.ops.svc.cluster.local"],
        )

    def test_jwks_matches_the_signing_key(self, tmp_path: Path) -> None:
        """The JWKS holds exactly the public half of the signing key."""
        assert main(["init", "--out", str(tmp_path)]) == 0
        layout = Layout(tmp_path)
        key = SigningKey.from_file(layout.signing_key)
        assert list(KeySet.from_file(layout.jwks)) == [key.kid]

    def test_refuses_to_overwrite_without_force(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A second init into the same folder fails with exit 1 and leaves the key untouched."""
        assert main(["init", "--out", str(tmp_path)]) == 0
        before = Layout(tmp_path).signing_key.read_bytes()
        assert main(["init", "--out", str(tmp_path)]) == 1
        assert "--force" in capsys.readouterr().err
        assert Layout(tmp_path).signing_key.read_bytes() == before

    def test_bad_ip_is_a_clear_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An --ip that is not an address exits 1 with a message naming it."""
        assert main(["init", "--out", str(tmp_path), "--ip", "10.0.0.300"]) == 1
        assert "10.0.0.300" in capsys.readouterr().err

    def test_real_subprocess_run(self, tmp_path: Path) -> None:
        """`python -m certs_tooling init` works as a real process."""
        result = subprocess.run(
            [sys.executable, "-m", "certs_tooling", "init", "--out", str(tmp_path), "--local"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "kid" in result.stdout

    @pytest.mark.skipif(
        subprocess.run(["which", "openssl"], capture_output=True, check=False).returncode != 0,
        reason="openssl is not installed",
    )
    def test_openssl_agrees(self, pki: Pki) -> None:
        """openssl verify accepts both serving certificates against the CA alone."""
        for cert in (pki.webhook_cert, pki.approver_cert):
            result = subprocess.run(
                [
                    "openssl",
                    "verify",
                    "-CAfile",
                    str(pki.ca_cert),
                    "-purpose",
                    "sslserver",
                    str(cert),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.stdout.strip() == f"{cert}: OK", result.stderr


class TestHandshake:
    async def _serve(self, pki: Pki) -> tuple[asyncio.Server, int]:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki.webhook_cert, pki.webhook_key)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hello")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
        return server, server.sockets[0].getsockname()[1]

    async def test_client_trusting_only_the_ca_connects(
        self, pki: Pki, client_ssl: ssl.SSLContext
    ) -> None:
        """A client that trusts only the generated CA completes the handshake to 127.0.0.1."""
        server, port = await self._serve(pki)
        async with server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ssl, server_hostname="localhost"
            )
            assert await reader.read() == b"hello"
            writer.close()

    async def test_wrong_host_name_fails(self, pki: Pki, client_ssl: ssl.SSLContext) -> None:
        """A host name not in the certificate fails verification."""
        server, port = await self._serve(pki)
        async with server:
            with pytest.raises(ssl.SSLCertVerificationError, match="match"):
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client_ssl, server_hostname="evil.example"
                )

    async def test_other_ca_fails(self, pki: Pki, tmp_path: Path) -> None:
        """A client trusting another CA refuses the certificate."""
        assert main(["init", "--out", str(tmp_path), "--local"]) == 0
        other = ssl.create_default_context(cafile=str(Layout(tmp_path).ca_cert))
        server, port = await self._serve(pki)
        async with server:
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=other, server_hostname="localhost"
                )
