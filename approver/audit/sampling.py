"""One audit line per kind of repeated event per window, not one per request. Pure.

Two floods an unauthenticated caller can make would otherwise be one line each (and, for the
second, one stored audit row each, growing the database without bound):

* registrations a limit refuses (approver.pending_limits): emitted only, never stored;
* registrations that change nothing: a retry of a pending agent, a refusal (a junk or copied
  credential, a bad signature), a known agent registering again. Their events are stored, and
  emitted, at most once per key (reason, source address) per window, and at most
  ``max_per_window`` of them in all per window; the next stored one says how many were left
  out. Every event that changes a record is always stored.

  Security-relevant events (``security: true``: a copied token, a bad signature, ...) are
  sampled per key only, never under the overall bound of the others: a flood of junk from many
  addresses must not hide a thief's ``token_reused`` (outside attack, second round). They are
  stored within a budget of their own per reason (:class:`WindowBudget`), so a flood of one
  kind of refusal cannot use up another kind's; past it the line is still emitted, unstored.

:class:`LineSampler` decides: the first event of a key at once, then at most one per
``window_seconds`` for it, saying how many it left out.
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
        max_per_window: at most this many lines of all keys together per window (fixed
            windows); None: no overall bound.
    """

    def __init__(
        self,
        *,
        window_seconds: float = WINDOW_SECONDS,
        max_keys: int = MAX_KEYS,
        max_per_window: int | None = None,
    ) -> None:
        if (
            window_seconds <= 0
            or max_keys < 1
            or (max_per_window is not None and max_per_window < 1)
        ):
            raise ValueError(
                "window_seconds must be positive, max_keys and max_per_window at least 1"
            )
        self._window = window_seconds
        self._max = max_keys
        self._overall = (
            None
            if max_per_window is None
            else WindowBudget(per_window=max_per_window, window_seconds=window_seconds)
        )
        #: key -> (time of its last line, lines left out since).
        self._keys: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def admit(self, key: Hashable, now: float) -> int | None:
        """None: leave this line out. Otherwise write it, noting the returned number of lines
        of ``key`` left out since its previous line (0: none)."""
        last = self._keys.get(key)
        left_out = last[1] if last is not None else 0
        if (last is not None and now - last[0] < self._window) or not self._overall_room(now):
            self._keys[key] = (last[0] if last is not None else float("-inf"), left_out + 1)
            self._keys.move_to_end(key)
            self._forget_oldest()
            return None
        self._keys[key] = (now, 0)
        self._keys.move_to_end(key)
        self._forget_oldest()
        return left_out

    def _overall_room(self, now: float) -> bool:
        return self._overall is None or self._overall.take(None, now)

    def _forget_oldest(self) -> None:
        while len(self._keys) > self._max:
            self._keys.popitem(last=False)

    @property
    def window_seconds(self) -> float:
        return self._window


class WindowBudget:
    """At most ``per_window`` takes per key per fixed window of ``window_seconds`` (a window
    starts at a key's first take after the previous one ended).

    Args:
        per_window: takes allowed per key per window (at least 1).
        window_seconds: the window's length, seconds.
        max_keys: keys remembered (a forgotten key starts a fresh window).

    Raises:
        ValueError: a bound below 1 or a window that is not positive.
    """

    def __init__(
        self, *, per_window: int, window_seconds: float = WINDOW_SECONDS, max_keys: int = MAX_KEYS
    ) -> None:
        if per_window < 1 or window_seconds <= 0 or max_keys < 1:
            raise ValueError("per_window and max_keys must be at least 1, window_seconds positive")
        self._per_window = per_window
        self._window = window_seconds
        self._max = max_keys
        #: key -> (start of its window, takes in it).
        self._keys: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def take(self, key: Hashable, now: float) -> bool:
        """True: within the budget of ``key`` (and counted); False: its window is used up."""
        start, taken = self._keys.get(key, (float("-inf"), 0))
        if now - start >= self._window:
            start, taken = now, 0
        if taken >= self._per_window:
            return False
        self._keys[key] = (start, taken + 1)
        self._keys.move_to_end(key)
        while len(self._keys) > self._max:
            self._keys.popitem(last=False)
        return True
