"""The webhook's public keys as the approver reads them: a JWKS file re-read when it changes.

``certs-tooling keys add|activate|retire`` rewrites ``jwks.json`` (and a Kubernetes ConfigMap
volume is updated by a ``..data`` symlink swap): the approver must follow without a restart, so
a token signed by a newly activated key verifies, and one signed by a retired key does not.

:class:`FileKeySet` is a :class:`~bootstrap_token.KeySet` whose contents are those of the file
at the last look. It looks at the file's identity (inode, size, mtime, following symlinks) at
most once per ``check_interval_seconds``; a change that does not load (half-written, not a
JWKS, private members) keeps the keys in use and logs why, so a bad edit cannot lock every
agent out.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bootstrap_token import KeyLoadError, KeySet

log = logging.getLogger(__name__)


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class FileKeySet(KeySet):
    """A key set that follows ``path``.

    Args:
        path: a JWKS (or PEM public keys) file, see :meth:`KeySet.from_file`.
        check_interval_seconds: how often to look at the file (default 1 s).
        monotonic: the clock for that interval.

    Raises:
        KeyLoadError, OSError: the file cannot be loaded at start.
    """

    __slots__ = ("_checked", "_current", "_identity", "_interval", "_monotonic", "_path")

    def __init__(
        self,
        path: Path,
        *,
        check_interval_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._path = path
        self._interval = check_interval_seconds
        self._monotonic = monotonic
        self._identity = _identity(path)
        self._current = KeySet.from_file(path)
        self._checked = monotonic()

    def _keys_now(self) -> KeySet:
        now = self._monotonic()
        if now - self._checked < self._interval:
            return self._current
        self._checked = now
        identity = _identity(self._path)
        if identity == self._identity:
            return self._current
        try:
            loaded = KeySet.from_file(self._path)
        except (KeyLoadError, OSError) as exc:
            log.error(
                "JWKS %s changed but cannot be used (%s); keeping %d key(s)",
                self._path,
                exc,
                len(self._current),
            )
            return self._current
        self._identity = identity
        if set(loaded) != set(self._current):
            log.info("JWKS %s re-read: kids %s", self._path, sorted(loaded))
        self._current = loaded
        return loaded

    def __getitem__(self, kid: str) -> Ed25519PublicKey:
        # No look at the file here: ``verify`` asks ``kid in keys`` first and must then get
        # the key from the same snapshot, even if the file changed in between.
        return self._current[kid]

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys_now()

    def cluster_of(self, kid: str) -> str | None:
        # The snapshot ``kid in keys`` was answered from, as for ``__getitem__``: a key and its
        # cluster tie always come from the same reading of the file.
        return self._current.cluster_of(kid)

    def tied_to(self, cluster: str) -> KeySet:
        return self._keys_now().tied_to(cluster)

    def merged(self, other: KeySet) -> KeySet:
        return self._keys_now().merged(other)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys_now())

    def __len__(self) -> int:
        return len(self._keys_now())

    def __repr__(self) -> str:
        return f"FileKeySet(path={str(self._path)!r}, kids={sorted(self._current)!r})"

    def to_jwks(self) -> dict[str, list[dict[str, str]]]:
        return self._keys_now().to_jwks()
