"""The serving TLS context: TLS 1.2+, the certs-tooling certificate, errors that name the field."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from tests.conftest import Pki
from webhook.config import ConfigError
from webhook.tls import server_ssl_context


class TestServerSslContext:
    def test_loads_the_webhook_certificate(self, pki: Pki) -> None:
        """The certs-tooling pair loads into a server context with TLS 1.2 as the floor."""
        context = server_ssl_context(cert_file=pki.webhook_cert, key_file=pki.webhook_key)
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2
        assert context.verify_mode is ssl.CERT_NONE  # no client certificates asked for
        assert context.protocol is ssl.PROTOCOL_TLS_SERVER

    def test_missing_cert(self, pki: Pki, tmp_path: Path) -> None:
        """An unreadable certificate file is named as tlsCertFile."""
        with pytest.raises(ConfigError, match=r"^tlsCertFile .*missing.crt: cannot read"):
            server_ssl_context(cert_file=tmp_path / "missing.crt", key_file=pki.webhook_key)

    def test_cert_not_pem(self, pki: Pki, tmp_path: Path) -> None:
        """A certificate file without a PEM certificate is named as tlsCertFile."""
        bad = tmp_path / "bad.crt"
        bad.write_text("not a certificate\n")
        with pytest.raises(ConfigError, match=r"^tlsCertFile .*: not a PEM certificate$"):
            server_ssl_context(cert_file=bad, key_file=pki.webhook_key)

    def test_key_not_pem(self, pki: Pki, tmp_path: Path) -> None:
        """A key file without a PEM key is named as tlsKeyFile, without its contents."""
        bad = tmp_path / "bad.key"
        bad.write_text("s3cr3t-bytes\n")
        with pytest.raises(ConfigError, match=r"^tlsKeyFile .*: not an unencrypted PEM") as info:
            server_ssl_context(cert_file=pki.webhook_cert, key_file=bad)
        assert "s3cr3t" not in str(info.value)

    def test_key_does_not_match(self, pki: Pki) -> None:
        """The approver's key with the webhook's certificate is a mismatch on tlsKeyFile."""
        with pytest.raises(ConfigError, match=r"^tlsKeyFile .*: does not match the certificate"):
            server_ssl_context(cert_file=pki.webhook_cert, key_file=pki.approver_key)

    def test_missing_key(self, pki: Pki, tmp_path: Path) -> None:
        """An unreadable key file is named as tlsKeyFile."""
        with pytest.raises(ConfigError, match=r"^tlsKeyFile .*missing.key: cannot read"):
            server_ssl_context(cert_file=pki.webhook_cert, key_file=tmp_path / "missing.key")
