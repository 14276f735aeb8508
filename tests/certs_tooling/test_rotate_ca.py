"""``certs-tooling rotate-ca``: old+new caBundle overlap, re-issued leaves, --finish, real TLS."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest

from certs_tooling.cli import main
from certs_tooling.layout import Layout
from tests.certs_tooling.certs import (
    assert_is_ca,
    assert_is_serving_leaf,
    client_context,
    handshake,
    load,
    load_all,
    needs_openssl,
    openssl_verify,
    run_cli,
    service_names,
)


@pytest.fixture
def folder(tmp_path: Path) -> Layout:
    out = tmp_path / "pki"
    assert main(["init", "--out", str(out), "--local"]) == 0
    return Layout(out)


@pytest.fixture
def old_webhook(folder: Layout, tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the webhook's pre-rotation certificate and key (what pods still serve)."""
    cert, key = tmp_path / "old-webhook.crt", tmp_path / "old-webhook.key"
    shutil.copy(folder.webhook_cert, cert)
    shutil.copy(folder.webhook_key, key)
    return cert, key


class TestStart:
    def test_bundle_holds_old_and_new_and_leaves_come_from_new(self, folder: Layout) -> None:
        """After rotate-ca: ca-previous.crt is the old CA, ca-bundle.crt is [old, new], ca.crt is
        a new CA with another subject, and both leaves are issued by it with their SANs."""
        old_ca = load(folder.ca_cert)
        assert main(["rotate-ca", "--out", str(folder.root)]) == 0
        new_ca = load(folder.ca_cert)
        assert_is_ca(new_ca)
        assert new_ca != old_ca
        assert new_ca.subject != old_ca.subject
        assert load(folder.ca_previous) == old_ca
        assert load_all(folder.ca_bundle) == [old_ca, new_ca]
        assert_is_serving_leaf(
            load(folder.webhook_cert),
            new_ca,
            [*service_names("agent-bootstrap-webhook", "agent-bootstrap"), "localhost"],
            ["127.0.0.1", "::1"],
        )
        assert_is_serving_leaf(
            load(folder.approver_cert),
            new_ca,
            [*service_names("agent-bootstrap-approver", "agent-bootstrap"), "localhost"],
            ["127.0.0.1", "::1"],
        )

    def test_prints_the_numbered_steps(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The output tells the admin: 1. apply the bundle, 2. roll out, 3. --finish."""
        assert main(["rotate-ca", "--out", str(folder.root)]) == 0
        out = capsys.readouterr().out
        assert "  1. Apply " in out
        assert "as the caBundle of the MutatingWebhookConfiguration" in out
        assert "  2. Roll out the new serving certificates" in out
        assert (
            f"  3. After the rollout: certs-tooling rotate-ca --out {folder.root} --finish" in out
        )
        assert out.index("  1.") < out.index("  2.") < out.index("  3.")

    def test_second_start_is_refused(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A rotation while one is running exits 1 and changes nothing."""
        assert main(["rotate-ca", "--out", str(folder.root)]) == 0
        bundle = folder.ca_bundle.read_bytes()
        assert main(["rotate-ca", "--out", str(folder.root)]) == 1
        assert "already running" in capsys.readouterr().err
        assert folder.ca_bundle.read_bytes() == bundle

    def test_old_ca_key_is_not_kept(self, folder: Layout) -> None:
        """ca.key is the new CA's key; no file holds the old CA key any more."""
        old_key = folder.ca_key.read_bytes()
        assert main(["rotate-ca", "--out", str(folder.root)]) == 0
        for path in folder.root.rglob("*"):
            if path.is_file():
                assert old_key not in path.read_bytes(), path.name

    async def test_bundle_trusts_old_and_new_leaves_during_overlap(
        self, folder: Layout, old_webhook: tuple[Path, Path]
    ) -> None:
        """A client trusting the overlap bundle accepts a pod still serving the old leaf and
        one serving the new leaf; a client trusting only the new CA refuses the old leaf."""
        assert main(["rotate-ca", "--out", str(folder.root)]) == 0
        bundle_client = client_context(folder.ca_bundle)
        assert await handshake(*old_webhook, bundle_client) == b"hello"
        assert await handshake(folder.webhook_cert, folder.webhook_key, bundle_client) == b"hello"
        assert await handshake(folder.approver_cert, folder.approver_key, bundle_client) == b"hello"
        with pytest.raises(ssl.SSLCertVerificationError):
            await handshake(*old_webhook, client_context(folder.ca_cert))

    @needs_openssl
    def test_openssl_verifies_against_the_bundle(
        self, folder: Layout, old_webhook: tuple[Path, Path]
    ) -> None:
        """openssl verify accepts old and new leaves against ca-bundle.crt during the overlap."""
        assert main(["rotate-ca", "--out", str(folder.root)]) == 0
        for cert in (old_webhook[0], folder.webhook_cert, folder.approver_cert):
            assert openssl_verify(folder.ca_bundle, cert) == f"{cert}: OK"


class TestFinish:
    def test_finish_keeps_only_the_new_ca(self, folder: Layout) -> None:
        """--finish leaves ca-bundle.crt = ca.crt and deletes ca-previous.crt."""
        assert main(["rotate-ca", "--out", str(folder.root)]) == 0
        assert main(["rotate-ca", "--out", str(folder.root), "--finish"]) == 0
        assert folder.ca_bundle.read_bytes() == folder.ca_cert.read_bytes()
        assert not folder.ca_previous.exists()

    async def test_after_finish_only_new_leaves_are_trusted(
        self, folder: Layout, old_webhook: tuple[Path, Path]
    ) -> None:
        """With the finished bundle the new leaf is accepted and the old one refused."""
        assert main(["rotate-ca", "--out", str(folder.root)]) == 0
        assert main(["rotate-ca", "--out", str(folder.root), "--finish"]) == 0
        client = client_context(folder.ca_bundle)
        assert await handshake(folder.webhook_cert, folder.webhook_key, client) == b"hello"
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await handshake(*old_webhook, client)

    @needs_openssl
    def test_openssl_refuses_old_leaf_after_finish(
        self, folder: Layout, old_webhook: tuple[Path, Path]
    ) -> None:
        """openssl verify fails the old leaf against the finished bundle."""
        assert main(["rotate-ca", "--out", str(folder.root)]) == 0
        assert main(["rotate-ca", "--out", str(folder.root), "--finish"]) == 0
        assert openssl_verify(folder.ca_bundle, folder.webhook_cert).endswith(": OK")
        assert "unable to get local issuer certificate" in openssl_verify(
            folder.ca_bundle, old_webhook[0]
        )

    def test_finish_without_rotation_is_refused(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--finish with no rotation running exits 1."""
        assert main(["rotate-ca", "--out", str(folder.root), "--finish"]) == 1
        assert "no CA rotation is running" in capsys.readouterr().err

    def test_finish_refused_while_a_leaf_is_from_the_old_ca(
        self, folder: Layout, old_webhook: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """If the folder's webhook leaf still chains to the old CA, --finish refuses (exit 1)
        and keeps the overlap bundle."""
        assert main(["rotate-ca", "--out", str(folder.root)]) == 0
        shutil.copy(old_webhook[0], folder.webhook_cert)
        shutil.copy(old_webhook[1], folder.webhook_key)
        bundle = folder.ca_bundle.read_bytes()
        assert main(["rotate-ca", "--out", str(folder.root), "--finish"]) == 1
        assert "webhook-tls.crt is not issued by the current CA" in capsys.readouterr().err
        assert folder.ca_bundle.read_bytes() == bundle
        assert folder.ca_previous.exists()


def test_real_subprocess_run(folder: Layout) -> None:
    """`python -m certs_tooling rotate-ca` starts and finishes a rotation as real processes."""
    started = run_cli("rotate-ca", "--out", str(folder.root))
    assert started.returncode == 0, started.stderr
    assert "Next steps:" in started.stdout
    assert len(load_all(folder.ca_bundle)) == 2
    finished = run_cli("rotate-ca", "--out", str(folder.root), "--finish")
    assert finished.returncode == 0, finished.stderr
    assert len(load_all(folder.ca_bundle)) == 1
