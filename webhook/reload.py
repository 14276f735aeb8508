"""Re-read the signing key and the serving certificate when their files change.

Every ``reloadIntervalSeconds`` each file is looked at and what changed is loaded, checked in
full and only then swapped in (:class:`~webhook.credentials.Credentials`); the mechanism
(fingerprints that follow Secret volume symlink swaps and certs-tooling's atomic renames, no
retry of the same broken files) is shared with the approver: :mod:`bootstrap_token.reload`.

A file that cannot be used (half-written, a certificate that does not match its key, a
non-Ed25519 key) is refused: the old material stays, an error is logged (field and path, never
contents) and ``reloads_total{result="failure"}`` counts it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from bootstrap_token.reload import Fingerprint, ReloadResult, Watched, fingerprint, poll
from webhook.credentials import Credentials, SigningMaterial, load_signing
from webhook.metrics import WebhookMetrics
from webhook.tls import TlsFiles, TlsMaterial, load_tls

__all__ = ["Fingerprint", "Reloader", "Watched", "fingerprint"]

logger = logging.getLogger(__name__)


class Reloader:
    """Watches the key and certificate files of one process and swaps in what changed.

    Args:
        credentials: the holder to update.
        signing_key_file: ``signingKeyFile``.
        tls_files: the serving certificate's files, or None when this process serves no TLS.
        metrics: reload counters and key/certificate gauges.
        clock: seconds since the epoch (gauges).
        signing_key_field: how errors name the key file's setting (see
            :meth:`webhook.config.WebhookSettings.describe_field`).
    """

    def __init__(
        self,
        *,
        credentials: Credentials,
        signing_key_file: Path,
        tls_files: TlsFiles | None,
        metrics: WebhookMetrics,
        clock: Callable[[], float] = time.time,
        signing_key_field: str = "signingKeyFile",
    ) -> None:
        self.credentials = credentials
        self.metrics = metrics
        self.clock = clock

        def install_signing(material: SigningMaterial) -> None:
            credentials.signing = material

        def install_tls(material: TlsMaterial) -> None:
            credentials.tls = material

        def count(material: str) -> Callable[[ReloadResult], None]:
            def on_result(result: ReloadResult) -> None:
                metrics.reloaded(material=material, ok=result is ReloadResult.SUCCESS)

            return on_result

        self.signing: Watched[SigningMaterial] = Watched(
            name="signing_key",
            paths=(signing_key_file,),
            load=lambda: load_signing(signing_key_file, field_name=signing_key_field),
            current=lambda: credentials.signing,
            install=install_signing,
            describe=lambda m: f"kid={m.kid}",
            on_result=count("signing_key"),
            logger=logger,
        )
        self.tls: Watched[TlsMaterial] | None = None
        if tls_files is not None:
            self.tls = Watched(
                name="tls",
                paths=tls_files.paths,
                load=lambda: load_tls(tls_files),
                current=lambda: credentials.tls,
                install=install_tls,
                describe=lambda m: f"serial={m.serial:x}",
                on_result=count("tls"),
                logger=logger,
            )

    def check(self) -> None:
        """Look at every file once; load and swap in what changed; refresh the gauges.

        Never raises for unusable files (they are logged and counted).
        """
        self.signing.check()
        if self.tls is not None:
            self.tls.check()
        self.publish()

    def publish(self) -> None:
        """Refresh the key-age and certificate-expiry gauges from the material in use."""
        now = self.clock()
        signing = self.credentials.signing
        self.metrics.set_signing_key(
            kid=signing.kid if signing else None,
            age_seconds=now - signing.mtime if signing else None,
        )
        tls = self.credentials.tls
        if tls is not None:
            self.metrics.set_certificate(
                expiry_seconds=tls.not_after - now, age_seconds=now - tls.not_before
            )

    async def run(self, interval: float) -> None:
        """Call :meth:`check` every ``interval`` seconds until cancelled."""
        await poll(self.check, interval, logger=logger)
