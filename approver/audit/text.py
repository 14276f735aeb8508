"""Untrusted text as it may appear in an audit message. Pure.

Audit messages end up in terminals, log viewers and SIEM consoles. A value that came from the
network (a query filter, a request body member) is rendered with :func:`audit_value` before it
is put into one: a U+202E right-to-left override, a terminal escape sequence or a newline then
reads as an escape (``\\u202e``, ``\\x1b``, ``\\n``) instead of acting, and a value of thousands of
characters cannot bury the rest of the line.
"""

from __future__ import annotations

import re

#: Longest rendering of one value, the truncation marker included.
MAX_AUDIT_VALUE = 128
#: The smallest ``limit`` :func:`audit_value` accepts (room for the marker of any length).
_MIN_LIMIT = 32
#: Printable ASCII, the backslash excepted (it is doubled, so that no escape can be forged).
_PLAIN = re.compile(r"[ -\[\]-~]*")
_NAMED = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def audit_value(value: str, *, limit: int = MAX_AUDIT_VALUE) -> str:
    """Render an untrusted string as at most ``limit`` characters of printable ASCII.

    Printable ASCII (space to ``~``) is kept as is, except ``\\``, which is doubled. Every other
    character becomes an escape as Python's :func:`ascii` writes it: ``\\t``, ``\\n``, ``\\r``,
    else ``\\xhh`` (up to U+00FF), ``\\uhhhh`` or ``\\Uhhhhhhhh``. When the rendering is longer
    than ``limit``, it is cut between two characters' renderings (never inside an escape) and
    ends with the marker ``...[<n> chars]``, ``n`` being the length of ``value``.

    Args:
        value: the text as received.
        limit: the longest result (at least 32).

    Returns:
        The rendering: printable ASCII, at most ``limit`` characters; equal to ``value`` when
        ``value`` is printable ASCII without ``\\`` and fits.

    Raises:
        ValueError: ``limit`` is below 32.
    """
    if limit < _MIN_LIMIT:
        raise ValueError(f"limit must be at least {_MIN_LIMIT}")
    if len(value) <= limit and _PLAIN.fullmatch(value):
        return value
    marker = f"...[{len(value)} chars]"
    budget = limit - len(marker)
    pieces: list[str] = []
    size = 0
    cut = 0
    for char in value:
        piece = _escape(char)
        size += len(piece)
        if size > limit:
            return "".join(pieces[:cut]) + marker
        pieces.append(piece)
        if size <= budget:
            cut = len(pieces)
    return "".join(pieces)


def _escape(char: str) -> str:
    if " " <= char <= "~" and char != "\\":
        return char
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
