"""A control plane's adapter with each call counted and timed
(``agent_bootstrap_approver_control_plane_calls_total{operation, result}`` and
``..._control_plane_call_duration_seconds{operation}``, :mod:`approver.metrics`).

``result``: ``ok``; ``rejected`` (its administrator rejected the agent: an answer, not a
fault); ``refused`` (it refused the request); ``unavailable`` (it could not be reached within
the budget); ``error`` (anything else). ``refusal`` (a local check of a body) and ``close`` are
not calls and pass through uncounted.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from approver.domain.control_plane import (
    AgentIntent,
    ControlPlane,
    ControlPlaneAgent,
    ControlPlaneRefused,
    ControlPlaneRejected,
    ControlPlaneUnavailable,
    Grant,
)
from approver.domain.records import ControlPlaneState
from approver.metrics import ApproverMetrics

T = TypeVar("T")


class MeteredControlPlane:
    """``inner`` (a :class:`~approver.domain.control_plane.ControlPlane`), metered.

    Args:
        inner: the adapter.
        metrics: where the calls are counted.
    """

    def __init__(self, inner: ControlPlane, metrics: ApproverMetrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self.name = inner.name
        self.upstream = inner.upstream
        self.budget_seconds = inner.budget_seconds

    @property
    def inner(self) -> ControlPlane:
        """The adapter metered."""
        return self._inner

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        result = "error"
        try:
            value = await call()
            result = "ok"
            return value
        except ControlPlaneRejected:
            result = "rejected"
            raise
        except ControlPlaneRefused:
            result = "refused"
            raise
        except ControlPlaneUnavailable:
            result = "unavailable"
            raise
        finally:
            self._metrics.control_plane_calls.labels(operation, result).inc()
            self._metrics.control_plane_duration.labels(operation).observe(
                time.perf_counter() - started
            )

    def refusal(self, body: Mapping[str, object]) -> str | None:
        return self._inner.refusal(body)

    async def admit(
        self, agent: AgentIntent, *, deadline: float | None = None
    ) -> ControlPlaneState:
        return await self._call("admit", lambda: self._inner.admit(agent, deadline=deadline))

    async def grant(
        self,
        agent: AgentIntent,
        *,
        known: ControlPlaneState | None,
        deadline: float | None = None,
    ) -> Grant:
        return await self._call(
            "grant", lambda: self._inner.grant(agent, known=known, deadline=deadline)
        )

    async def approve(self, agent: AgentIntent) -> ControlPlaneState:
        return await self._call("approve", lambda: self._inner.approve(agent))

    async def reject(self, agent_id: str) -> ControlPlaneState:
        return await self._call("reject", lambda: self._inner.reject(agent_id))

    async def remove(self, agent_id: str) -> None:
        await self._call("remove", lambda: self._inner.remove(agent_id))

    async def snapshot(self) -> Mapping[str, ControlPlaneAgent]:
        return await self._call("snapshot", self._inner.snapshot)

    async def close(self) -> None:
        await self._inner.close()
