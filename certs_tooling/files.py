"""Writing key material to disk: private keys mode 0600, public files 0644, atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def write_file(path: Path, data: bytes, *, private: bool) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename in the same folder).

    A private file is created with mode 0600 from the start (never world-readable, not even
    for an instant); a public one ends with 0644.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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
