"""Follow key and certificate files on disk; swap in what they hold only once it is checked.

Shared by both services (the webhook's signing key and serving certificate, the approver's
serving certificate). Nothing here knows what the files hold: a :class:`Watched` is given how
to load its material, where the material in use lives, and how to install a new one.

Why polling: a Secret mounted as a volume changes by a symlink swap. The kubelet writes the new
files into a fresh timestamped folder and renames the ``..data`` symlink onto it, so
``tls.crt`` (a symlink to ``..data/tls.crt``) resolves to a new inode (Kubernetes "Secrets",
"Mounted Secrets are updated automatically"; kubelet ``AtomicWriter``). An inotify watch on the
file would keep watching the old inode, so the files are looked at instead: each path is
``stat()``\\ ed, following symlinks, and (device, inode, size, mtime in ns) compared with the
last look (:func:`fingerprint`). certs-tooling's atomic ``rename`` changes the inode the same
way.

On a change the material is loaded and checked in full; only then is it installed. A file that
cannot be used (half-written, a certificate that does not match its key) is refused: the
material in use stays, one ERROR line names the settings field and the path (never contents),
and the attempt counts as a ``failure``. The same fingerprint is not retried (no log flood)
unless the failure was transient (the files changed while being read); the next change is.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Generic, Protocol, TypeVar

#: Per path: (st_dev, st_ino, st_size, st_mtime_ns) of the resolved file, or None if missing.
Fingerprint = tuple[tuple[int, int, int, int] | None, ...]


class MaterialError(ValueError):
    """Key or certificate files that cannot be used. The message names the settings field and
    the path, never file contents.

    ``transient`` marks a failure that may pass by itself (the files changed while being read):
    the same files are then looked at again at the next look.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class MaterialMissing(MaterialError):
    """A file that does not exist (as opposed to one that exists but cannot be used). While no
    material of its kind is in use it is a WARNING ("still waiting"), not a failure."""


class ReloadResult(StrEnum):
    """The outcome of one attempt to load changed files: the ``result`` label value of a
    ``reloads_total{result}`` counter (the webhook's metric uses the same values)."""

    SUCCESS = "success"
    FAILURE = "failure"


@dataclass
class ReloadCounts:
    """Reload attempts so far, by :class:`ReloadResult` (a touch with the same content is not
    an attempt). Plain counters, in the shape of a Prometheus ``Counter`` with a ``result``
    label: ``counter.labels(result=str(result)).inc()`` in :meth:`record` is all that wiring it
    to prometheus-client takes."""

    success: int = 0
    failure: int = 0

    def record(self, result: ReloadResult) -> None:
        """Add one to the count of ``result``."""
        if result is ReloadResult.SUCCESS:
            self.success += 1
        else:
            self.failure += 1


class Material(Protocol):
    """What a :class:`Watched` needs of loaded material: a digest of the file contents (e.g.
    SHA-256), to tell a real change from a touch or a re-projection of the same bytes."""

    @property
    def digest(self) -> bytes: ...


M = TypeVar("M", bound=Material)


def fingerprint(paths: Sequence[Path]) -> Fingerprint:
    """The identity of the files behind ``paths`` now (symlinks followed).

    Returns:
        One entry per path, in order: ``(st_dev, st_ino, st_size, st_mtime_ns)``, or None for a
        path that cannot be ``stat()``\\ ed (missing, dangling symlink, no permission).
    """
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
    """One kind of material, the files it comes from, and how to load and install it.

    Attributes:
        name: the kind in log lines and metric labels, e.g. ``tls`` or ``signing_key``.
        paths: the files to look at (as the settings name them; symlinks are followed).
        load: reads and checks the files in full; raises :class:`MaterialError` (message:
            field and path, never contents) when they cannot be used.
        current: the material in use, or None while there is none.
        install: makes its argument the material in use (one reference swap).
        describe: a short public description for log lines (a serial, a kid; never secrets).
        on_result: told each attempt's outcome (counters).
        logger: where the INFO and ERROR lines go (the service's own logger).
        seen: the files as last looked at; None until the first look, which therefore loads
            them (and installs only if the content differs from what was loaded at start).
    """

    name: str
    paths: tuple[Path, ...]
    load: Callable[[], M]
    current: Callable[[], M | None]
    install: Callable[[M], None]
    describe: Callable[[M], str]
    on_result: Callable[[ReloadResult], None]
    logger: logging.Logger
    seen: Fingerprint | None = None

    def check(self) -> ReloadResult | None:
        """Look at the files once; load, check and install their material if they changed.

        Returns:
            The outcome of the attempt, or None when there was none: the files did not change,
            the content is the same as in use, or a missing file is still awaited.

        Never raises :class:`MaterialError`: unusable files are logged and counted.
        """
        now = fingerprint(self.paths)
        if now == self.seen:
            return None
        self.seen = now
        try:
            material = self.load()
        except MaterialError as exc:
            if exc.transient:
                self.seen = None  # try again at the next look
            old = self.current()
            if old is None and isinstance(exc, MaterialMissing):
                self.logger.warning("%s: still waiting for it", exc)
                return None
            self.logger.error(
                "not loading %s, keeping %s: %s",
                self.name,
                self.describe(old) if old is not None else "none",
                exc,
            )
            self.on_result(ReloadResult.FAILURE)
            return ReloadResult.FAILURE
        old = self.current()
        if old is not None and old.digest == material.digest:
            return None  # touched or re-projected, same content
        self.install(material)
        self.on_result(ReloadResult.SUCCESS)
        self.logger.info(
            "reloaded %s: %s (was %s)",
            self.name,
            self.describe(material),
            self.describe(old) if old is not None else "none",
        )
        return ReloadResult.SUCCESS


async def poll(check: Callable[[], object], interval: float, *, logger: logging.Logger) -> None:
    """Call ``check()`` every ``interval`` seconds until cancelled.

    An exception from ``check`` (a bug: unusable files are not exceptions) is logged with its
    traceback and the polling goes on, so one bad look cannot stop rotation for good.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            check()
        except Exception:
            logger.exception("checking key and certificate files failed")
