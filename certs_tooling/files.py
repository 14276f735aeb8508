"""Writing key material to disk: private keys mode 0600, public files 0644, atomically.

Every write is a temp file in the same folder + ``fsync`` + ``os.replace`` (rename(2) is atomic
on POSIX file systems): a reader sees the old file or the new one, never a partial one.

A certificate and its key are two files, and no file system swaps two names at once, so
:func:`write_serving_pair` fixes an order and also writes a combined file:

1. ``<name>.key`` (the new key; the old certificate is still in place),
2. ``<name>.crt`` (the certificate is the commit marker),
3. ``<name>.pem`` (certificate + key in one file, one rename).

A server that reloads when the certificate changes and reads the certificate *before* the key
can never pair a new certificate with an old key: when it sees the new certificate, the new key
is already in place. The one mixed pair it can meet, in the instant between steps 1 and 2, is
old certificate + new key, which ``ssl.SSLContext.load_cert_chain`` rejects ("key values
mismatch", OpenSSL ``X509_check_private_key``); the server keeps its current context and retries
on the next change. A server that loads the ``.pem`` file (as both certificate and key file) can
never see a mixed pair at all. In Kubernetes the Secret volume is swapped as a whole by the
kubelet (one ``..data`` symlink rename), so the same holds for ``tls.crt``/``tls.key``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
FOLDER_MODE = 0o700


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every platform opens folders)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_file(path: Path, data: bytes, *, private: bool) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename in the same folder).

    A private file is created with mode 0600 from the start (never world-readable, not even
    for an instant); a public one ends with 0644. Missing folders are created with 0700.

    Raises:
        OSError: the folder cannot be created or written.
    """
    path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, PRIVATE_MODE if private else PUBLIC_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_serving_pair(
    *, cert_path: Path, key_path: Path, pair_path: Path, cert_pem: bytes, key_pem: bytes
) -> None:
    """Replace a serving certificate and its key in the order the module docstring explains.

    ``cert_pem`` may hold a chain (leaf first). The combined file holds ``cert_pem`` then
    ``key_pem`` and is private.

    Raises:
        OSError: a write failed; files already replaced stay replaced (each is whole).
    """
    write_file(key_path, key_pem, private=True)
    write_file(cert_path, cert_pem, private=False)
    write_file(pair_path, cert_pem + key_pem, private=True)


def remove_file(path: Path) -> bool:
    """Delete ``path`` if it exists. Returns True when something was deleted."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_dir(path.parent)
    return True


def mode_of(path: Path) -> int:
    """Permission bits of ``path`` (e.g. ``0o600``). Raises OSError when it is missing."""
    return path.stat().st_mode & 0o777
