"""Re-reading the signing key and certificate: what changes is swapped in, what is broken is not."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bootstrap_token import SigningKey
from tests.conftest import Pki
from tests.webhook.volumes import SecretVolume, issue_serving_cert
from webhook.credentials import Credentials, MaterialMissing, load_signing
from webhook.metrics import WebhookMetrics
from webhook.reload import Reloader, fingerprint
from webhook.tls import MaterialError, TlsFiles, load_tls

NOW = 1_800_000_000.0


@pytest.fixture
def volume(tmp_path: Path, pki: Pki) -> SecretVolume:
    """A Secret volume with a signing key and the test PKI's webhook pair."""
    vol = SecretVolume(tmp_path / "secret")
    vol.write(
        {
            "signing.key": pki.signing_key.read_bytes(),
            "tls.crt": pki.webhook_cert.read_bytes(),
            "tls.key": pki.webhook_key.read_bytes(),
        }
    )
    return vol


def reloader_for(vol: SecretVolume, *, pem: bool = False) -> Reloader:
    files = (
        TlsFiles(pem=vol.path("tls.pem"))
        if pem
        else TlsFiles(cert=vol.path("tls.crt"), key=vol.path("tls.key"))
    )
    credentials = Credentials(tls=load_tls(files))
    with contextlib.suppress(MaterialMissing):
        credentials.signing = load_signing(vol.path("signing.key"))
    reloader = Reloader(
        credentials=credentials,
        signing_key_file=vol.path("signing.key"),
        tls_files=files,
        metrics=WebhookMetrics(registry=CollectorRegistry()),
        clock=lambda: NOW,
    )
    reloader.check()  # the first look records the files (same content: no swap)
    return reloader


def reloads(reloader: Reloader, material: str, result: str) -> float:
    return reloader.metrics.sample("reloads_total", {"material": material, "result": result})


class TestFingerprint:
    def test_follows_symlink_swaps(self, volume: SecretVolume, pki: Pki) -> None:
        """A kubelet-style swap changes the fingerprint of the path the config names."""
        before = fingerprint([volume.path("tls.crt")])
        volume.write({"tls.crt": pki.webhook_cert.read_bytes(), "tls.key": b"", "signing.key": b""})
        assert fingerprint([volume.path("tls.crt")]) != before

    def test_missing_file(self, tmp_path: Path) -> None:
        """A path that does not exist fingerprints as None."""
        assert fingerprint([tmp_path / "absent"]) == (None,)


class TestSigningKeyRotation:
    def test_new_key_is_swapped_in(self, volume: SecretVolume, pki: Pki) -> None:
        """A new signing key in a swapped volume becomes the key in use; the old object stays."""
        reloader = reloader_for(volume)
        old = reloader.credentials.signing
        assert old is not None
        new_key = SigningKey.generate()
        volume.write(
            {
                "signing.key": new_key.private_pem(),
                "tls.crt": pki.webhook_cert.read_bytes(),
                "tls.key": pki.webhook_key.read_bytes(),
            }
        )
        reloader.check()
        current = reloader.credentials.signing
        assert current is not None
        assert current.kid == new_key.kid != old.kid
        assert old.signer.sign({"still": "usable"}).count(".") == 2  # in-flight reviews finish
        assert reloads(reloader, "signing_key", "success") == 1
        assert reloader.metrics.sample("signing_key_info", {"kid": new_key.kid}) == 1
        assert reloader.metrics.sample("signing_key_info", {"kid": old.kid}) == 0

    def test_atomic_rename_is_seen(self, tmp_path: Path) -> None:
        """certs-tooling's `keys activate` replaces signing.key by a rename: picked up too."""
        path = tmp_path / "signing.key"
        path.write_bytes(SigningKey.generate().private_pem())
        credentials = Credentials.with_key(None)
        credentials.signing = load_signing(path)
        reloader = Reloader(
            credentials=credentials,
            signing_key_file=path,
            tls_files=None,
            metrics=WebhookMetrics(registry=CollectorRegistry()),
        )
        reloader.check()
        new_key = SigningKey.generate()
        staged = tmp_path / ".signing.key.tmp"
        staged.write_bytes(new_key.private_pem())
        os.replace(staged, path)
        reloader.check()
        assert credentials.signing is not None
        assert credentials.signing.kid == new_key.kid

    def test_broken_key_is_refused_and_logged(
        self, volume: SecretVolume, pki: Pki, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A half-written or non-Ed25519 key keeps the old one, logs an error once, counts it."""
        reloader = reloader_for(volume)
        old = reloader.credentials.signing
        assert old is not None
        pem = SigningKey.generate().private_pem()
        volume.write(
            {
                "signing.key": pem[: len(pem) // 2],  # half-written
                "tls.crt": pki.webhook_cert.read_bytes(),
                "tls.key": pki.webhook_key.read_bytes(),
            }
        )
        with caplog.at_level(logging.ERROR, logger="webhook.reload"):
            reloader.check()
            reloader.check()  # same files: not retried, not logged again
        assert reloader.credentials.signing is old
        assert reloads(reloader, "signing_key", "failure") == 1
        [record] = caplog.records
        assert "signingKeyFile" in record.getMessage()
        assert f"keeping kid={old.kid}" in record.getMessage()
        assert "PRIVATE KEY" not in record.getMessage()

    def test_touch_without_change_is_not_a_reload(self, volume: SecretVolume, pki: Pki) -> None:
        """Re-projecting the same bytes (new inode, same content) swaps nothing, counts nothing."""
        reloader = reloader_for(volume)
        old = reloader.credentials.signing
        volume.write(
            {
                "signing.key": pki.signing_key.read_bytes(),
                "tls.crt": pki.webhook_cert.read_bytes(),
                "tls.key": pki.webhook_key.read_bytes(),
            }
        )
        reloader.check()
        assert reloader.credentials.signing is old
        assert reloads(reloader, "signing_key", "success") == 0

    def test_key_that_appears_later(self, tmp_path: Path, pki: Pki) -> None:
        """No key file at start: not ready; the file appears: loaded, without an error count."""
        vol = SecretVolume(tmp_path / "late")
        vol.write(
            {"tls.crt": pki.webhook_cert.read_bytes(), "tls.key": pki.webhook_key.read_bytes()}
        )
        reloader = reloader_for(vol)
        assert reloader.credentials.signing is None
        assert not reloader.credentials.ready
        reloader.check()
        assert reloads(reloader, "signing_key", "failure") == 0
        vol.write(
            {
                "signing.key": pki.signing_key.read_bytes(),
                "tls.crt": pki.webhook_cert.read_bytes(),
                "tls.key": pki.webhook_key.read_bytes(),
            }
        )
        reloader.check()
        assert reloader.credentials.ready


class TestCertificateRotation:
    def test_new_pair_is_swapped_in(self, volume: SecretVolume, pki: Pki) -> None:
        """A new matching cert/key pair gives a new context with the new serial and expiry."""
        reloader = reloader_for(volume)
        old = reloader.credentials.tls
        assert old is not None
        cert, key, serial = issue_serving_cert(pki.ca_cert, pki.ca_key)
        volume.write({"signing.key": pki.signing_key.read_bytes(), "tls.crt": cert, "tls.key": key})
        reloader.check()
        new = reloader.credentials.tls
        assert new is not None
        assert new.serial == serial != old.serial
        assert new.context is not old.context
        assert reloads(reloader, "tls", "success") == 1
        assert reloader.metrics.sample("tls_certificate_expiry_seconds") == new.not_after - NOW

    def test_mismatched_pair_is_refused(
        self, volume: SecretVolume, pki: Pki, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A new certificate with the old key (half-updated pair) keeps the old material."""
        reloader = reloader_for(volume)
        old = reloader.credentials.tls
        cert, _, _ = issue_serving_cert(pki.ca_cert, pki.ca_key)
        volume.write(
            {
                "signing.key": pki.signing_key.read_bytes(),
                "tls.crt": cert,
                "tls.key": pki.webhook_key.read_bytes(),
            }
        )
        with caplog.at_level(logging.ERROR, logger="webhook.reload"):
            reloader.check()
        assert reloader.credentials.tls is old
        assert reloads(reloader, "tls", "failure") == 1
        assert "does not match the certificate" in caplog.text

    def test_pair_written_in_two_steps(self, tmp_path: Path, pki: Pki) -> None:
        """Files replaced one by one: refused while mismatched, loaded once both are new."""
        crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
        crt.write_bytes(pki.webhook_cert.read_bytes())
        key.write_bytes(pki.webhook_key.read_bytes())
        files = TlsFiles(cert=crt, key=key)
        credentials = Credentials(tls=load_tls(files))
        reloader = Reloader(
            credentials=credentials,
            signing_key_file=tmp_path / "absent.key",
            tls_files=files,
            metrics=WebhookMetrics(registry=CollectorRegistry()),
        )
        reloader.check()
        new_cert, new_key, serial = issue_serving_cert(pki.ca_cert, pki.ca_key)
        crt.write_bytes(new_cert)
        reloader.check()
        assert credentials.tls is not None
        assert credentials.tls.serial != serial
        key.write_bytes(new_key)
        reloader.check()
        assert credentials.tls.serial == serial

    def test_combined_pem_file(self, tmp_path: Path, pki: Pki) -> None:
        """tlsPemFile (cert + key in one file, one rename) loads and rotates."""
        vol = SecretVolume(tmp_path / "pem")
        vol.write({"tls.pem": pki.layout.webhook_pair.read_bytes()})
        reloader = reloader_for(vol, pem=True)
        cert, key, serial = issue_serving_cert(pki.ca_cert, pki.ca_key)
        vol.write({"tls.pem": cert + key})
        reloader.check()
        assert reloader.credentials.tls is not None
        assert reloader.credentials.tls.serial == serial

    def test_garbage_pem_is_refused(self, tmp_path: Path, pki: Pki) -> None:
        """A combined file without a key, or not PEM at all, is named by tlsPemFile."""
        path = tmp_path / "tls.pem"
        path.write_bytes(pki.webhook_cert.read_bytes())
        with pytest.raises(
            MaterialError, match=r"^tlsPemFile .*not an unencrypted PEM private key"
        ):
            load_tls(TlsFiles(pem=path))
        path.write_bytes(b"junk")
        with pytest.raises(MaterialError, match=r"^tlsPemFile .*not a PEM certificate"):
            load_tls(TlsFiles(pem=path))


class TestRun:
    async def test_run_polls_until_cancelled(self, volume: SecretVolume, pki: Pki) -> None:
        """run() looks at the files on its interval; a new key shows up without a call."""
        import asyncio

        reloader = reloader_for(volume)
        task = asyncio.create_task(reloader.run(0.01))
        new_key = SigningKey.generate()
        volume.write(
            {
                "signing.key": new_key.private_pem(),
                "tls.crt": pki.webhook_cert.read_bytes(),
                "tls.key": pki.webhook_key.read_bytes(),
            }
        )
        for _ in range(500):
            signing = reloader.credentials.signing
            if signing is not None and signing.kid == new_key.kid:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert reloader.credentials.signing is not None
        assert reloader.credentials.signing.kid == new_key.kid


class TestSigningKeyMode:
    """A signing key other users may read is a warning each time it is loaded (issue 17)."""

    def test_world_readable_key_warns(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="webhook.credentials")
        path = tmp_path / "signing.key"
        path.write_bytes(SigningKey.generate().private_pem())
        path.chmod(0o644)
        material = load_signing(path, field_name="signingKeyFile (config file webhook.yaml)")
        assert material.kid
        assert caplog.messages == [
            f"signingKeyFile (config file webhook.yaml) {path} has mode 0644: open to users "
            "other than its owner; make it owner-only (chmod 600), or in Kubernetes mount its "
            "Secret with defaultMode 0440 and the pod's fsGroup"
        ]
        assert "PRIVATE KEY" not in caplog.text

    def test_owner_only_key_is_quiet(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="webhook.credentials")
        path = tmp_path / "signing.key"
        path.write_bytes(SigningKey.generate().private_pem())
        path.chmod(0o600)
        load_signing(path)
        assert caplog.messages == []
