"""Re-read the signing key and the serving certificate when their files change.

Secrets mounted as volumes change by a symlink swap: the kubelet writes the new files into a
fresh timestamped folder and renames the ``..data`` symlink onto it, so ``tls.crt`` (a symlink to
``..data/tls.crt``) resolves to a new inode ("Secrets", "Mounted Secrets are updated
automatically"; kubelet ``AtomicWriter``). An inotify watch on the file would keep watching the
old inode, so this module polls instead: every ``reloadIntervalSeconds`` it ``stat()``\\ s each
path, following symlinks, and compares (device, inode, size, mtime in ns). certs-tooling's
atomic ``rename`` of ``signing.key`` or ``webhook-tls.pem`` changes the inode the same way.

On a change the material is loaded and checked in full; only then is it swapped in
(:class:`~webhook.credentials.Credentials`). A file that cannot be used (half-written, a
certificate that does not match its key, a non-Ed25519 key) is refused: the old material stays,
an error is logged (field and path, never contents) and ``reloads_total{result="failure"}``
counts it. The same fingerprint is not retried (no log flood) unless the failure was transient
(the files changed while being read); the next change is.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from webhook.credentials import Credentials, MaterialMissing, SigningMaterial, load_signing
from webhook.metrics import WebhookMetrics
from webhook.tls import MaterialError, TlsFiles, TlsMaterial, load_tls

logger = logging.getLogger(__name__)

#: Per path: (st_dev, st_ino, st_size, st_mtime_ns) of the resolved file, or None if missing.
Fingerprint = tuple[tuple[int, int, int, int] | None, ...]

M = TypeVar("M", SigningMaterial, TlsMaterial)


def fingerprint(paths: Sequence[Path]) -> Fingerprint:
    """The identity of the files behind ``paths`` now (symlinks followed)."""
    out: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


@dataclass
class Watched(Generic[M]):
    """One kind of material and how to load and install it."""

    name: str  # "signing_key" or "tls": the ``material`` label of reloads_total
    paths: tuple[Path, ...]
    load: Callable[[], M]
    current: Callable[[], M | None]
    install: Callable[[M], None]
    describe: Callable[[M], str]
    #: The files as last looked at; None until the first look, which therefore loads them
    #: (and swaps only if the content differs from what was loaded at start).
    seen: Fingerprint | None = None


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

        self.signing: Watched[SigningMaterial] = Watched(
            name="signing_key",
            paths=(signing_key_file,),
            load=lambda: load_signing(signing_key_file, field_name=signing_key_field),
            current=lambda: credentials.signing,
            install=install_signing,
            describe=lambda m: f"kid={m.kid}",
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
            )

    def check(self) -> None:
        """Look at every file once; load and swap in what changed; refresh the gauges.

        Never raises for unusable files (they are logged and counted).
        """
        self._check(self.signing)
        if self.tls is not None:
            self._check(self.tls)
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
        while True:
            await asyncio.sleep(interval)
            try:
                self.check()
            except Exception:  # a bug here must not stop rotation for good
                logger.exception("checking key and certificate files failed")

    def _check(self, watched: Watched[M]) -> None:
        now = fingerprint(watched.paths)
        if now == watched.seen:
            return
        watched.seen = now
        try:
            material = watched.load()
        except MaterialError as exc:
            if exc.transient:
                watched.seen = None  # try again at the next look
            old = watched.current()
            if old is None and isinstance(exc, MaterialMissing):
                logger.warning("%s: still waiting for it", exc)
                return
            logger.error(
                "not loading %s, keeping %s: %s",
                watched.name,
                watched.describe(old) if old is not None else "none",
                exc,
            )
            self.metrics.reloaded(material=watched.name, ok=False)
            return
        old = watched.current()
        if old is not None and old.digest == material.digest:
            return  # touched or re-projected, same content
        watched.install(material)
        self.metrics.reloaded(material=watched.name, ok=True)
        logger.info(
            "reloaded %s: %s (was %s)",
            watched.name,
            watched.describe(material),
            watched.describe(old) if old is not None else "none",
        )
