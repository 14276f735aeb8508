"""``certs-tooling renew-serving-cert``: same CA, same SANs, new key, safe write order, real TLS."""

from __future__ import annotations

import os
import ssl
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certs_tooling.cli import main
from certs_tooling.layout import Layout
from tests.certs_tooling.certs import (
    DAY,
    T0,
    assert_is_serving_leaf,
    client_context,
    handshake,
    load,
    needs_openssl,
    openssl_verify,
    run_cli,
    service_names,
)

LOCAL_IPS = ["127.0.0.1", "::1"]


@pytest.fixture
def folder(tmp_path: Path) -> Layout:
    """A fresh ``init --local`` folder with two extra SANs on every serving certificate."""
    out = tmp_path / "pki"
    assert (
        main(
            [
                *("init", "--out", str(out), "--local", "--namespace", "ops"),
                *("--dns", "webhook.example.com", "--ip", "10.0.0.7"),
            ]
        )
        == 0
    )
    return Layout(out)


class TestRenew:
    def test_new_leaf_same_ca_same_sans_new_key(self, folder: Layout) -> None:
        """Both leaves are re-issued by the unchanged CA with exactly the SANs they had, under
        new keys and serials."""
        ca_before = folder.ca_cert.read_bytes()
        bundle_before = folder.ca_bundle.read_bytes()
        old = {p: load(p) for p in (folder.webhook_cert, folder.approver_cert)}
        old_keys = {p: p.read_bytes() for p in (folder.webhook_key, folder.approver_key)}
        assert main(["renew-serving-cert", "--out", str(folder.root)]) == 0
        ca = load(folder.ca_cert)
        assert folder.ca_cert.read_bytes() == ca_before
        assert folder.ca_bundle.read_bytes() == bundle_before
        for service, cert_path in (
            ("agent-bootstrap-webhook", folder.webhook_cert),
            ("agent-bootstrap-approver", folder.approver_cert),
        ):
            new = load(cert_path)
            assert new.serial_number != old[cert_path].serial_number
            assert_is_serving_leaf(
                new,
                ca,
                [*service_names(service, "ops"), "webhook.example.com", "localhost"],
                ["10.0.0.7", *LOCAL_IPS],
            )
        for key_path, before in old_keys.items():
            assert key_path.read_bytes() != before
            assert stat.S_IMODE(key_path.stat().st_mode) == 0o600

    def test_component_and_leaf_days(self, folder: Layout) -> None:
        """--component webhook renews only the webhook, valid --leaf-days from --now."""
        approver_before = folder.approver_cert.read_bytes()
        now = int(datetime.now(UTC).timestamp())
        args = ["renew-serving-cert", "--out", str(folder.root), "--component", "webhook"]
        assert main([*args, "--leaf-days", "30", "--now", str(now)]) == 0
        assert folder.approver_cert.read_bytes() == approver_before
        cert = load(folder.webhook_cert)
        assert cert.not_valid_after_utc == datetime.fromtimestamp(now + 30 * DAY, UTC)

    def test_writes_key_then_cert_then_pair(
        self, folder: Layout, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Each pair is replaced key first, certificate second (the commit marker), combined
        file last, so a reader that sees the new certificate always finds the new key."""
        renames: list[str] = []
        real_replace = os.replace

        def spy(src: str, dst: str | Path) -> None:
            renames.append(Path(dst).name)
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", spy)
        assert main(["renew-serving-cert", "--out", str(folder.root)]) == 0
        assert renames == [
            "webhook-tls.key",
            "webhook-tls.crt",
            "webhook-tls.pem",
            "approver-tls.key",
            "approver-tls.crt",
            "approver-tls.pem",
        ]

    def test_old_cert_with_new_key_is_rejected_by_load_cert_chain(
        self, folder: Layout, tmp_path: Path
    ) -> None:
        """The one transient mix the order allows (old certificate, new key) is refused by
        ssl's load_cert_chain, so a reloading server keeps its current context."""
        old_cert = tmp_path / "old.crt"
        old_cert.write_bytes(folder.webhook_cert.read_bytes())
        assert main(["renew-serving-cert", "--out", str(folder.root)]) == 0
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with pytest.raises(ssl.SSLError, match=r"KEY_VALUES_MISMATCH|key values mismatch"):
            ctx.load_cert_chain(old_cert, folder.webhook_key)
        ctx.load_cert_chain(folder.webhook_pair)  # the combined file loads as one

    def test_missing_ca_is_exit_1_and_writes_nothing(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without ca.key the command fails with a message naming it and leaves the leaves."""
        before = folder.webhook_cert.read_bytes()
        folder.ca_key.unlink()
        assert main(["renew-serving-cert", "--out", str(folder.root)]) == 1
        assert f"{folder.ca_key} is missing" in capsys.readouterr().err
        assert folder.webhook_cert.read_bytes() == before

    def test_bad_component_is_usage_error(self, folder: Layout) -> None:
        """An unknown --component is a usage error (exit 2)."""
        assert main(["renew-serving-cert", "--out", str(folder.root), "--component", "x"]) == 2

    async def test_tls_after_renewal(self, folder: Layout) -> None:
        """A client trusting only the CA accepts the renewed leaf; a wrong host name fails."""
        assert main(["renew-serving-cert", "--out", str(folder.root)]) == 0
        client = client_context(folder.ca_cert)
        for cert, key in (
            (folder.webhook_cert, folder.webhook_key),
            (folder.approver_cert, folder.approver_key),
        ):
            assert await handshake(cert, key, client) == b"hello"
            with pytest.raises(ssl.SSLCertVerificationError, match="match"):
                await handshake(cert, key, client, server_hostname="evil.example")
        assert await handshake(folder.webhook_pair, folder.webhook_pair, client) == b"hello"

    @needs_openssl
    def test_openssl_verifies_renewed_leaves(self, folder: Layout) -> None:
        """openssl verify -purpose sslserver accepts both renewed leaves against ca.crt."""
        assert main(["renew-serving-cert", "--out", str(folder.root)]) == 0
        for cert in (folder.webhook_cert, folder.approver_cert):
            assert openssl_verify(folder.ca_cert, cert) == f"{cert}: OK"

    def test_real_subprocess_run(self, folder: Layout) -> None:
        """`python -m certs_tooling renew-serving-cert` renews as a real process."""
        before = load(folder.approver_cert).serial_number
        result = run_cli("renew-serving-cert", "--out", str(folder.root), "--component", "approver")
        assert result.returncode == 0, result.stderr
        assert "renewed approver serving certificate" in result.stdout
        assert load(folder.approver_cert).serial_number != before


def test_leaf_never_outlives_the_ca(tmp_path: Path) -> None:
    """A leaf renewed with more days than the CA has left ends with the CA."""
    args = ["init", "--out", str(tmp_path), "--ca-days", "10", "--now", str(T0)]
    assert main(args) == 0
    renew = ["renew-serving-cert", "--out", str(tmp_path), "--leaf-days", "365"]
    assert main([*renew, "--now", str(T0 + DAY)]) == 0
    layout = Layout(tmp_path)
    assert load(layout.webhook_cert).not_valid_after_utc == load(layout.ca_cert).not_valid_after_utc
