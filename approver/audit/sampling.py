"""One audit line per kind of repeated refusal per window, not one per request. Pure.

A flood of registrations a limit refuses (approver.pending_limits) writes nothing to the
database, but each would still be one JSON line on stdout: a flood of the log instead. So the
registrar emits the first refusal of a key (limit, source address) at once and then at most one
line per ``window_seconds`` for it, saying how many it left out (``; N more like it in the
last 10 s not logged``). The metric still counts every one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

#: Default seconds between two lines of one key.
WINDOW_SECONDS = 10.0
#: Keys remembered at once; the least recently seen is forgotten first.
MAX_KEYS = 4096


class LineSampler:
    """Decides which repeated lines are written.

    Args:
        window_seconds: the least time between two lines of one key.
        max_keys: keys remembered (a forgotten key's next line is written at once).
    """

    def __init__(self, *, window_seconds: float = WINDOW_SECONDS, max_keys: int = MAX_KEYS):
        if window_seconds <= 0 or max_keys < 1:
            raise ValueError("window_seconds must be positive and max_keys at least 1")
        self._window = window_seconds
        self._max = max_keys
        #: key -> (time of its last line, lines left out since).
        self._keys: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def admit(self, key: Hashable, now: float) -> int | None:
        """None: leave this line out. Otherwise write it, noting the returned number of lines
        of ``key`` left out since its previous line (0: none)."""
        last = self._keys.get(key)
        if last is not None and now - last[0] < self._window:
            self._keys[key] = (last[0], last[1] + 1)
            self._keys.move_to_end(key)
            return None
        self._keys[key] = (now, 0)
        self._keys.move_to_end(key)
        while len(self._keys) > self._max:
            self._keys.popitem(last=False)
        return last[1] if last is not None else 0

    @property
    def window_seconds(self) -> float:
        return self._window
