"""The approver's serving certificate (``tlsCertFile`` + ``tlsKeyFile``), followed on disk.

A renewed certificate is served without a restart, as the webhook's is: a Kubernetes Secret
volume is updated by a symlink swap of ``..data`` ("Mounted Secrets are updated
automatically"), certs-tooling replaces files by atomic renames. Every
``tlsReloadIntervalSeconds`` the files are looked at (:mod:`bootstrap_token.reload`); a changed
pair is loaded and checked in full (:func:`bootstrap_token.tls.load_tls`) and only then swapped
in, and the listener's context moves each new handshake onto it
(:func:`bootstrap_token.tls.swapping_context`). Connections already open keep the certificate
they were accepted with.

Outcomes: one INFO line per reload (the new certificate's subject, notAfter, serial and
fingerprint prefix); one ERROR line for files that cannot be used (field and path, never
contents), the certificate in use staying; both counted in :attr:`ServingCertificate.counts`
by ``result`` (``success``/``failure``, the webhook's ``reloads_total`` label values).
"""

from __future__ import annotations

import logging
import ssl

from bootstrap_token.reload import ReloadCounts, ReloadResult, Watched, poll
from bootstrap_token.tls import (
    TlsFiles,
    TlsMaterial,
    describe_certificate,
    load_tls,
    swapping_context,
)

log = logging.getLogger(__name__)


class ServingCertificate:
    """The certificate in use and the files it comes from.

    Args:
        files: ``cert`` + ``key``, labelled with the settings fields where they were set.
        counts: where reload outcomes are counted (default: a new :class:`ReloadCounts`).

    Attributes:
        material: the certificate in use (replaced, never mutated).
        context: the listener's context; each new handshake gets :attr:`material`'s
            certificate.
        counts: reload outcomes so far.

    Raises:
        MaterialError: the files cannot be used at start (see
            :func:`bootstrap_token.tls.load_tls`).
    """

    def __init__(self, files: TlsFiles, *, counts: ReloadCounts | None = None) -> None:
        self.material: TlsMaterial = load_tls(files)
        self.counts = counts if counts is not None else ReloadCounts()
        self.context: ssl.SSLContext = swapping_context(self.material, lambda: self.material)
        self._watched: Watched[TlsMaterial] = Watched(
            name="tls",
            paths=files.paths,
            load=lambda: load_tls(files),
            current=lambda: self.material,
            install=self._install,
            describe=describe_certificate,
            on_result=self.counts.record,
            logger=log,
        )

    def _install(self, material: TlsMaterial) -> None:
        self.material = material

    def check(self) -> ReloadResult | None:
        """Look at the files once; swap in a changed pair that loads and matches.

        The first look loads the files again and swaps only if their content differs from what
        was loaded at start (a change in between is not missed).

        Returns:
            The outcome, or None when nothing changed. Never raises for unusable files.
        """
        return self._watched.check()

    async def follow(self, interval: float) -> None:
        """:meth:`check` every ``interval`` seconds until cancelled."""
        await poll(self.check, interval, logger=log)
