"""StreamSpace's agent rate limiter (``api/internal/middleware/ratelimit.go`` and
``api/cmd/main.go`` ``agentRateLimit``), for the control-plane stand-in."""

from __future__ import annotations

from tests.streamspace.gojson import GoMap

#: ``agentRateLimit``: one-minute window.
WINDOW_SECONDS = 60.0


class RateLimiter:
    """``middleware.RateLimiter``: a sliding window of attempt times per key.

    ``CheckLimit(key, maxAttempts, window)``: drop the attempts older than ``window`` (an attempt
    counts while ``now - t < window``); if ``maxAttempts`` remain, refuse *without* recording
    this one; otherwise record it and allow. A refused request therefore does not extend the
    wait. One limiter is shared by every agent route (``GetRateLimiter``).
    """

    def __init__(self) -> None:
        self._attempts: dict[str, list[float]] = {}

    def check_limit(self, key: str, max_attempts: int, window: float, now: float) -> bool:
        """``CheckLimit``: True when the request may go on (and it is counted)."""
        valid = [t for t in self._attempts.get(key, []) if now - t < window]
        if len(valid) >= max_attempts:
            self._attempts[key] = valid
            return False
        valid.append(now)
        self._attempts[key] = valid
        return True

    def attempts(self, key: str, window: float, now: float) -> int:
        """``GetAttempts``: attempts inside the window."""
        return sum(1 for t in self._attempts.get(key, []) if now - t < window)


def agent_rate_limit_key(client_ip: str) -> str:
    """``agentRateLimit``: the key is ``"agent:" + c.ClientIP()``."""
    return "agent:" + client_ip


def rate_limited_body() -> GoMap:
    """``agentRateLimit``'s 429 body (``retryAfter`` is in seconds; no ``Retry-After`` header)."""
    return GoMap(
        error="Rate limit exceeded",
        details="Too many requests. Please try again later.",
        retryAfter=60,
    )
