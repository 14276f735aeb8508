"""``certs-tooling init``: what it writes, with which extensions, and that TLS works with it."""

from __future__ import annotations

import json
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap_token import KeySet, SigningKey
from certs_tooling.cli import main
from certs_tooling.layout import Layout
from tests.certs_tooling.certs import (
    T0,
    assert_is_ca,
    assert_is_serving_leaf,
    client_context,
    handshake,
    load,
    load_all,
    needs_openssl,
    openssl,
    openssl_verify,
)
from tests.conftest import Pki


class TestInit:
    def test_writes_every_file_with_private_keys_0600(self, tmp_path: Path) -> None:
        """All twelve files plus the key file exist; private files are 0600, public ones 0644,
        folders 0700."""
        out = tmp_path / "pki"
        assert main(["init", "--out", str(out)]) == 0
        layout = Layout(out)
        private = {
            layout.ca_key,
            layout.webhook_key,
            layout.webhook_pair,
            layout.approver_key,
            layout.approver_pair,
            layout.signing_key,
        }
        assert set(layout.private_files()) == private
        for path in layout.all_files():
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o600 if path in private else 0o644), path.name
        kid = SigningKey.from_file(layout.signing_key).kid
        assert stat.S_IMODE(layout.key_file(kid).stat().st_mode) == 0o600
        assert stat.S_IMODE(layout.keys_dir.stat().st_mode) == 0o700
        assert sorted(p.name for p in out.iterdir()) == sorted(
            [p.name for p in layout.all_files() if p.parent == out] + ["keys"]
        )
        assert sorted(p.name for p in layout.keys_dir.iterdir()) == sorted(
            [f"{kid}.key", "state.json"]
        )

    def test_ca_bundle_is_the_ca_and_pairs_hold_cert_then_key(self, tmp_path: Path) -> None:
        """ca-bundle.crt starts as exactly ca.crt; each .pem holds its .crt followed by its .key."""
        assert main(["init", "--out", str(tmp_path)]) == 0
        layout = Layout(tmp_path)
        assert layout.ca_bundle.read_bytes() == layout.ca_cert.read_bytes()
        assert load_all(layout.ca_bundle) == [load(layout.ca_cert)]
        for cert, key, pair in (
            (layout.webhook_cert, layout.webhook_key, layout.webhook_pair),
            (layout.approver_cert, layout.approver_key, layout.approver_pair),
        ):
            assert pair.read_bytes() == cert.read_bytes() + key.read_bytes()

    def test_signing_key_is_registered_active(self, tmp_path: Path) -> None:
        """The first signing key is recorded in keys/state.json as the active key, dated --now."""
        assert main(["init", "--out", str(tmp_path), "--now", str(T0)]) == 0
        layout = Layout(tmp_path)
        key = SigningKey.from_file(layout.signing_key)
        state = json.loads(layout.key_state.read_text())
        assert state == {
            "version": 1,
            "keys": [
                {
                    "kid": key.kid,
                    "state": "active",
                    "created_at": "2025-01-01T00:00:00Z",
                    "activated_at": "2025-01-01T00:00:00Z",
                    "deactivated_at": None,
                    "retired_at": None,
                }
            ],
        }
        assert layout.key_file(key.kid).read_bytes() == layout.signing_key.read_bytes()

    def test_force_starts_the_key_store_over(self, tmp_path: Path) -> None:
        """init --force replaces the store: old key files and ca-previous.crt are deleted."""
        assert main(["init", "--out", str(tmp_path)]) == 0
        layout = Layout(tmp_path)
        assert main(["keys", "add", "--out", str(tmp_path)]) == 0
        assert main(["rotate-ca", "--out", str(tmp_path)]) == 0
        assert len(list(layout.keys_dir.glob("*.key"))) == 2
        assert main(["init", "--out", str(tmp_path), "--force"]) == 0
        kid = SigningKey.from_file(layout.signing_key).kid
        assert [p.name for p in layout.keys_dir.glob("*.key")] == [f"{kid}.key"]
        assert not layout.ca_previous.exists()
        assert list(KeySet.from_file(layout.jwks)) == [kid]

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

    @needs_openssl
    def test_openssl_agrees(self, pki: Pki) -> None:
        """openssl verify accepts both serving certificates against the CA alone."""
        for cert in (pki.webhook_cert, pki.approver_cert):
            assert openssl_verify(pki.ca_cert, cert) == f"{cert}: OK"


SERVING = ["webhook", "approver"]


def pair(pki: Pki, component: str) -> tuple[Path, Path]:
    if component == "webhook":
        return pki.webhook_cert, pki.webhook_key
    return pki.approver_cert, pki.approver_key


class TestHandshake:
    @pytest.mark.parametrize("component", SERVING)
    async def test_client_trusting_only_the_ca_connects(
        self, pki: Pki, client_ssl: ssl.SSLContext, component: str
    ) -> None:
        """A client that trusts only the generated CA completes the handshake to 127.0.0.1."""
        assert await handshake(*pair(pki, component), client_ssl) == b"hello"
        assert await handshake(*pair(pki, component), client_ssl, server_hostname="::1") == b"hello"

    @pytest.mark.parametrize("component", SERVING)
    async def test_wrong_host_name_fails(
        self, pki: Pki, client_ssl: ssl.SSLContext, component: str
    ) -> None:
        """A host name not in the certificate fails verification."""
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            await handshake(*pair(pki, component), client_ssl, server_hostname="evil.example")

    @pytest.mark.parametrize("component", SERVING)
    async def test_other_ca_fails(self, pki: Pki, tmp_path: Path, component: str) -> None:
        """A client trusting another CA refuses the certificate."""
        assert main(["init", "--out", str(tmp_path), "--local"]) == 0
        other = client_context(Layout(tmp_path).ca_cert)
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
            await handshake(*pair(pki, component), other)


@needs_openssl
class TestOpenssl:
    def test_x509_shows_the_exact_extensions(self, pki: Pki) -> None:
        """openssl x509 reads the critical flags and values we chose for the CA and a leaf."""
        ca = openssl("x509", "-in", str(pki.ca_cert), "-noout", "-ext", "basicConstraints,keyUsage")
        assert ca.stdout.splitlines() == [
            "X509v3 Basic Constraints: critical",
            "    CA:TRUE, pathlen:0",
            "X509v3 Key Usage: critical",
            "    Certificate Sign, CRL Sign",
        ]
        leaf = openssl(
            "x509",
            "-in",
            str(pki.webhook_cert),
            "-noout",
            "-ext",
            "basicConstraints,keyUsage,extendedKeyUsage,subjectAltName",
        )
        svc = "agent-bootstrap-webhook"
        ns = "agent-bootstrap"
        assert [line.rstrip() for line in leaf.stdout.splitlines()] == [
            "X509v3 Basic Constraints: critical",
            "    CA:FALSE",
            "X509v3 Key Usage: critical",
            "    Digital Signature",
            "X509v3 Extended Key Usage:",
            "    TLS Web Server Authentication",
            "X509v3 Subject Alternative Name:",
            f"    DNS:{svc}, DNS:{svc}.{ns}, DNS:{svc}.{ns}.svc, DNS:{svc}.{ns}.svc.cluster.local, "
            "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
        ]

    def test_private_key_matches_certificate(self, pki: Pki) -> None:
        """openssl derives the same public key from each serving key as its certificate holds."""
        for cert, key in (pair(pki, c) for c in SERVING):
            from_cert = openssl("x509", "-in", str(cert), "-noout", "-pubkey").stdout
            from_key = openssl("pkey", "-in", str(key), "-pubout").stdout
            assert from_cert == from_key
            assert from_cert.startswith("-----BEGIN PUBLIC KEY-----")
