"""API keys provisioned from a mounted Secret folder (GitOps).

Layout: one file per key in ``apiKeys.secretDir``; the file name is the key's name, the content
the full key string ``abk_<id>_<secret>`` (surrounding whitespace ignored). This is what a
Kubernetes Secret mounted as a volume looks like (one file per data key; Kubernetes
documentation, "Secrets", "Using Secrets as files from a Pod")::

    apiVersion: v1
    kind: Secret
    metadata: {name: agent-approver-api-keys}
    stringData:
      docker-hosts-eu: abk_k5v2...._q3l7....
      ci-runners: abk_....

Rules:

* Hidden entries are skipped: the kubelet's ``..data`` symlink and ``..<timestamp>`` folders.
  File names must be 1..128 characters of ``A-Z a-z 0-9 . _ -``.
* A file whose content is not a key is skipped with a warning naming the *file*, never its
  content. Two files holding keys with the same id: the first by name wins, with a warning.
* The folder is re-read when it changes: at most every ``poll_seconds`` the entries' names,
  sizes, inodes and modification times (following the kubelet's symlinks, which it swaps
  atomically through ``..data``) are compared with the last read.
* These keys have no scope and no expiry, are never shown (their secret is in the Secret
  already), and cannot be revoked or rotated through the admin API: remove or change the
  Secret's entry instead. Only their digest is kept in memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from approver.api_keys.format import MalformedApiKey, parse_api_key
from approver.api_keys.records import ApiKeyRecord, KeySource
from approver.api_keys.scope import ApiKeyScope

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
#: A key file is 73 characters; anything much larger is not a key and is not read whole.
_MAX_FILE_BYTES = 1024

_Signature = tuple[tuple[str, int, int, int], ...]


@dataclass(frozen=True, slots=True)
class _Loaded:
    signature: _Signature
    keys: dict[str, ApiKeyRecord]


class SecretFolderKeys:
    """The keys of one folder, re-read when it changes.

    Args:
        directory: the mounted Secret folder.
        poll_seconds: how often :meth:`refresh` looks for changes, in seconds (default 10).
    """

    def __init__(self, directory: Path, *, poll_seconds: float = 10.0) -> None:
        self._directory = directory
        self._poll_seconds = poll_seconds
        self._loaded = _Loaded(signature=(), keys={})
        self._checked_at: float | None = None
        self._lock = asyncio.Lock()

    @property
    def directory(self) -> Path:
        return self._directory

    def __len__(self) -> int:
        return len(self._loaded.keys)

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The provisioned key with ``key_id``, or None."""
        return self._loaded.keys.get(key_id)

    def records(self) -> list[ApiKeyRecord]:
        """Every provisioned key, by name."""
        return sorted(self._loaded.keys.values(), key=lambda r: (r.name, r.key_id))

    def load(self) -> None:
        """Read the folder now (blocking). A missing or unreadable folder yields no keys and a
        warning; it never raises."""
        signature = self._signature()
        self._loaded = _Loaded(signature=signature, keys=self._read())

    async def refresh(self, *, now: float) -> None:
        """Re-read the folder if ``poll_seconds`` passed since the last look and it changed.

        Args:
            now: seconds since the epoch (the registrar's clock).
        """
        if self._checked_at is not None and now - self._checked_at < self._poll_seconds:
            return
        async with self._lock:
            if self._checked_at is not None and now - self._checked_at < self._poll_seconds:
                return
            self._checked_at = now
            signature = await asyncio.to_thread(self._signature)
            if signature != self._loaded.signature:
                keys = await asyncio.to_thread(self._read)
                if keys.keys() != self._loaded.keys.keys():
                    log.info("api key folder %s: %d key(s) provisioned", self._directory, len(keys))
                self._loaded = _Loaded(signature=signature, keys=keys)

    def _entries(self) -> list[Path]:
        try:
            names = sorted(os.listdir(self._directory))
        except OSError as exc:
            log.warning("api key folder %s unreadable: %s", self._directory, exc.strerror)
            return []
        return [self._directory / n for n in names if not n.startswith(".")]

    def _signature(self) -> _Signature:
        entries = []
        for path in self._entries():
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append((path.name, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(entries)

    def _read(self) -> dict[str, ApiKeyRecord]:
        keys: dict[str, ApiKeyRecord] = {}
        for path in self._entries():
            if not path.is_file():
                continue
            if _NAME.fullmatch(path.name) is None:
                log.warning(
                    "api key file %r ignored: name must be 1..128 of A-Z a-z 0-9 . _ -", path.name
                )
                continue
            try:
                with path.open("rb") as handle:
                    data = handle.read(_MAX_FILE_BYTES + 1)
                mtime = path.stat().st_mtime
            except OSError as exc:
                log.warning("api key file %r ignored: %s", path.name, exc.strerror)
                continue
            try:
                if len(data) > _MAX_FILE_BYTES:
                    raise MalformedApiKey("file too large to be an API key")
                parsed = parse_api_key(data.decode("ascii").strip())
            except (MalformedApiKey, UnicodeDecodeError) as exc:
                detail = str(exc) if isinstance(exc, MalformedApiKey) else "not ASCII"
                log.warning("api key file %r ignored: %s", path.name, detail)
                continue
            if parsed.key_id in keys:
                log.warning(
                    "api key file %r ignored: same key id as file %r",
                    path.name,
                    keys[parsed.key_id].name,
                )
                continue
            keys[parsed.key_id] = ApiKeyRecord(
                key_id=parsed.key_id,
                name=path.name,
                secret_hash=parsed.digest,
                scope=ApiKeyScope(),
                source=KeySource.SECRET,
                created_at=datetime.fromtimestamp(mtime, UTC),
            )
        return keys
