"""``jti`` values for the hot path: 128 bits from the OS CSPRNG, fetched 256 at a time.

:func:`bootstrap_token.new_jti` calls ``os.urandom(16)`` per token: one ``getrandom(2)`` system
call each, which was 4% of a review's CPU time under load (docs/webhook.md, "Where the time
goes"). :class:`JtiSource` reads 4 KiB at once and hands out 16-byte slices, so one system call
serves 256 tokens. The bytes are the same kind (``os.urandom``, the kernel CSPRNG); each slice is
used once. A forked child drops the buffer it inherited (``os.register_at_fork``), so it never
hands out bytes its parent also hands out.

Output format as :func:`bootstrap_token.new_jti`: base64url without padding, 22 characters.
"""

from __future__ import annotations

import base64
import os

#: 16 bytes (128 bits) per jti (docs/design.md, "The bootstrap token").
JTI_BYTES = 16
#: Jtis per ``os.urandom`` call.
BATCH = 256


class JtiSource:
    """Hands out fresh ``jti`` strings; not thread-safe (one per event loop)."""

    __slots__ = ("_buffer", "_offset")

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0

    def reset(self) -> None:
        """Forget the buffered bytes (called in a forked child)."""
        self._buffer = b""
        self._offset = 0

    def __call__(self) -> str:
        """A new ``jti``: 128 random bits, base64url without padding (22 characters)."""
        offset = self._offset
        if offset >= len(self._buffer):
            self._buffer = os.urandom(JTI_BYTES * BATCH)
            offset = 0
        self._offset = offset + JTI_BYTES
        chunk = self._buffer[offset : offset + JTI_BYTES]
        return base64.urlsafe_b64encode(chunk).rstrip(b"=").decode("ascii")


#: The process's source, used by :func:`webhook.stamp.decide`.
new_jti = JtiSource()
os.register_at_fork(after_in_child=new_jti.reset)
