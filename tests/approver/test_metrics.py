"""The approver's Prometheus series (approver.metrics, issue 14 item 3), read from a real
registry after real requests: registrations by decision, reason and approval method; time to
approval; the pending backlog; answers by route and code; database errors; control-plane calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from approver import metrics as metrics_module
from approver.config import ApproverSettings
from approver.connectors.metered import MeteredControlPlane
from approver.domain import decision as decision_module
from approver.domain.control_plane import (
    AgentIntent,
    ControlPlaneAgent,
    ControlPlaneUnavailable,
    Grant,
    Upstream,
)
from approver.domain.records import ControlPlaneState
from approver.http.app import create_app
from approver.metrics import SECURITY_REASONS, ApproverMetrics, refresh_backlog
from approver.serve import serve
from approver.store import Store, StoreUnavailable
from bootstrap_token import KeySet, SigningKey
from bootstrap_token.version import version
from demo.stack import free_port
from tests.approver.helpers import (
    AGENT_ID,
    AGENT_ID_PREFIX,
    NOW,
    TRUST,
    Clock,
    RecordingSink,
    mint_token,
    registration_body,
    settings,
)
from tests.conftest import Pki

REGISTER = "/api/v1/agents/register"
ADMIN_TOKEN = "alice-admin-token-0123456789"
P = "agent_bootstrap_approver_"

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]


def value(metrics: ApproverMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(P + name, labels)
    return found or 0.0


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin-tokens"
    path.write_text(f"alice:{ADMIN_TOKEN}\n", encoding="utf-8")
    return path


async def app_client(
    aiohttp_client: ClientFactory,
    jwks_file: Path,
    tokens_file: Path,
    key_set: KeySet,
    store: Store,
    clock: Clock,
) -> tuple[Client, ApproverMetrics]:
    metrics = ApproverMetrics()
    app = create_app(
        settings(jwks_file=jwks_file, admin_tokens_file=tokens_file),
        key_set=key_set,
        store=store,
        clock=clock,
        audit=RecordingSink(),
        background=False,
        metrics=metrics,
    )
    return await aiohttp_client(app), metrics


async def test_registrations_by_decision_reason_and_method(
    aiohttp_client: ClientFactory,
    jwks_file: Path,
    tokens_file: Path,
    key_set: KeySet,
    signing_key: SigningKey,
    store: Store,
) -> None:
    clock = Clock()
    client, metrics = await app_client(
        aiohttp_client, jwks_file, tokens_file, key_set, store, clock
    )
    token = mint_token(signing_key)
    response = await client.post(
        REGISTER, json=registration_body(), headers={"X-Agent-API-Key": token}
    )
    assert response.status == 200
    response = await client.post(REGISTER, json=registration_body(AGENT_ID + "x"))
    assert response.status == 202
    assert (
        value(
            metrics,
            "registrations_total",
            decision="approved",
            reason="bootstrap_token_accepted",
            approval_method="namespace",
        )
        == 1
    )
    assert (
        value(
            metrics,
            "registrations_total",
            decision="pending",
            reason="manual_approval_required",
            approval_method="none",
        )
        == 1
    )
    assert value(metrics, "registration_duration_seconds_count") == 2
    # Approved at its first registration: no wait.
    assert value(metrics, "time_to_approval_seconds_count", approval_method="namespace") == 1
    assert value(metrics, "time_to_approval_seconds_sum", approval_method="namespace") == 0
    assert value(metrics, "responses_total", route=REGISTER, code="200") == 1
    assert value(metrics, "responses_total", route=REGISTER, code="202") == 1
    # A committed transaction per decision is timed.
    assert value(metrics, "store_duration_seconds_count", operation="transaction") >= 2
    assert value(metrics, "jwks_keys") == 1
    assert value(metrics, "database_ready") == 1


async def test_time_to_an_administrators_approval(
    aiohttp_client: ClientFactory,
    jwks_file: Path,
    tokens_file: Path,
    key_set: KeySet,
    sqlite_store: Store,
) -> None:
    clock = Clock()
    client, metrics = await app_client(
        aiohttp_client, jwks_file, tokens_file, key_set, sqlite_store, clock
    )
    assert (await client.post(REGISTER, json=registration_body())).status == 202
    clock.now = NOW + 120
    approve = f"/api/v1/admin/agents/{AGENT_ID}/approve"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert (await client.post(approve, headers=headers)).status == 200
    assert (await client.post(approve, headers=headers)).status == 200  # no change: not again
    assert value(metrics, "time_to_approval_seconds_count", approval_method="manual") == 1
    assert value(metrics, "time_to_approval_seconds_sum", approval_method="manual") == 120
    route = "/api/v1/admin/agents/{agent_id}/approve"
    assert value(metrics, "responses_total", route=route, code="200") == 2
    # The path a client chose never becomes a label value.
    assert (await client.get("/no/such/" + "x" * 50)).status == 404
    assert value(metrics, "responses_total", route="other", code="404") == 1


async def test_pending_backlog(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = ApproverMetrics()

    async def backlog() -> tuple[int, datetime]:
        return 3, datetime.fromtimestamp(NOW - 600, UTC)

    monkeypatch.setattr(sqlite_store, "pending_backlog", backlog)

    async def stop_after_one(_: float) -> None:
        raise StopAsyncIteration

    with pytest.raises(StopAsyncIteration):
        await refresh_backlog(sqlite_store, metrics, clock=lambda: NOW, sleep=stop_after_one)
    assert value(metrics, "pending_agents") == 3
    assert value(metrics, "oldest_pending_age_seconds") == 600


async def test_the_backlog_query_counts_pending_agents(
    aiohttp_client: ClientFactory,
    jwks_file: Path,
    tokens_file: Path,
    key_set: KeySet,
    store: Store,
) -> None:
    client, _ = await app_client(aiohttp_client, jwks_file, tokens_file, key_set, store, Clock())
    assert await store.pending_backlog() == (0, None)
    for suffix in ("a", "b"):
        response = await client.post(REGISTER, json=registration_body(AGENT_ID + suffix))
        assert response.status == 202
    count, oldest = await store.pending_backlog()
    assert count == 2
    assert oldest is not None
    assert oldest.timestamp() == NOW


async def test_database_errors_and_their_answers(
    aiohttp_client: ClientFactory,
    jwks_file: Path,
    tokens_file: Path,
    key_set: KeySet,
    sqlite_store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, metrics = await app_client(
        aiohttp_client, jwks_file, tokens_file, key_set, sqlite_store, Clock()
    )

    async def down(**_: Any) -> list[Any]:
        raise StoreUnavailable("connection refused")

    monkeypatch.setattr(sqlite_store, "list_agents", down)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = await client.get("/api/v1/admin/agents", headers=headers)
    assert response.status == 503
    assert value(metrics, "database_errors_total", kind="unavailable") == 1
    assert value(metrics, "responses_total", route="/api/v1/admin/agents", code="503") == 1


class FlakyControlPlane:
    """A control plane that is down for ``admit`` and answers ``snapshot``."""

    name = "fake"
    upstream = Upstream(base_url="http://control-plane.invalid", paths=())
    budget_seconds = 1.0

    def refusal(self, body: Mapping[str, object]) -> str | None:
        return None

    async def admit(
        self, agent: AgentIntent, *, deadline: float | None = None
    ) -> ControlPlaneState:
        raise ControlPlaneUnavailable("connection refused")

    async def grant(
        self, agent: AgentIntent, *, known: ControlPlaneState | None, deadline: float | None = None
    ) -> Grant:
        raise AssertionError("not called")

    async def approve(self, agent: AgentIntent) -> ControlPlaneState:
        return ControlPlaneState.APPROVED

    async def reject(self, agent_id: str) -> ControlPlaneState:
        return ControlPlaneState.REJECTED

    async def remove(self, agent_id: str) -> None:
        return None

    async def snapshot(self) -> Mapping[str, ControlPlaneAgent]:
        return {}

    async def close(self) -> None:
        return None


async def test_control_plane_calls_by_operation_and_result() -> None:
    metrics = ApproverMetrics()
    metered = MeteredControlPlane(FlakyControlPlane(), metrics)
    assert await metered.snapshot() == {}
    with pytest.raises(ControlPlaneUnavailable):
        await metered.admit(AgentIntent(agent_id=AGENT_ID, body=b"{}"))
    assert value(metrics, "control_plane_calls_total", operation="snapshot", result="ok") == 1
    assert value(metrics, "control_plane_calls_total", operation="admit", result="unavailable") == 1
    assert value(metrics, "control_plane_call_duration_seconds_count", operation="admit") == 1


def test_every_documented_series_is_exported_and_no_other() -> None:
    """The module docstring's table is the list operators read (and the alerts and the
    dashboard are tested against the exported names)."""
    documented = set(re.findall(r"^``(\w+)``", metrics_module.__doc__ or "", re.M))
    exported = {
        metric.name.removeprefix(P) + ("_total" if metric.type == "counter" else "")
        for metric in ApproverMetrics().registry.collect()
    }
    # pending_limited_total lives on the gate's counter, registered on the same registry.
    assert documented - {"pending_limited_total"} == exported


async def test_served_on_the_metrics_port(
    pki: Pki, tmp_path: Path, client_ssl: ssl.SSLContext
) -> None:
    """``serve`` exposes the series on ``metricsPort`` (plain HTTP), with the serving
    certificate's expiry and the build's version."""
    settings_ = ApproverSettings(
        auto_approve={"enabled": True},
        trust=TRUST,
        token={"jwks_file": pki.jwks},
        agent_id_prefix=AGENT_ID_PREFIX,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}",
        tls_cert_file=pki.approver_cert,
        tls_key_file=pki.approver_key,
        host="127.0.0.1",
        port=free_port(),
        metrics_host="127.0.0.1",
        metrics_port=free_port(),
    )
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings_, stop=stop))
    try:
        text = ""
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                assert not server.done(), server.exception()
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(
                        f"http://127.0.0.1:{settings_.metrics_port}/metrics"
                    ) as response:
                        text = await response.text()
                        break
                await asyncio.sleep(0.05)
        assert f'{P}build_info{{version="{version()}"}} 1.0' in text
        expiry = re.search(rf"^{P}tls_certificate_expiry_seconds (\S+)$", text, re.M)
        assert expiry is not None
        assert float(expiry.group(1)) > 3600
        assert f"{P}database_ready 1.0" in text
        # A request the parser refuses never reaches the app: the guard's answer is counted.
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", settings_.port, ssl=client_ssl, server_hostname="localhost"
        )
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        assert b" 400 " in (await asyncio.wait_for(reader.read(), 5)).split(b"\r\n")[0]
        writer.close()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{settings_.metrics_port}/metrics") as response,
        ):
            text = await response.text()
        refused = f'{P}connection_refusals_total{{kind="malformed_http_request"}} 1.0'
        assert refused in text
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=10)


def test_security_refusals_and_reload_failures_exist_at_zero_from_the_start() -> None:
    """Trial finding: a series that first appears at 1 has increase() 0 in Prometheus, so the
    copied-token and reload alerts missed the first event after every start."""
    metrics = ApproverMetrics()
    for reason in SECURITY_REASONS:
        sample = metrics.registry.get_sample_value(
            P + "registrations_total",
            {"decision": "rejected", "reason": reason, "approval_method": "none"},
        )
        assert sample == 0.0, reason
    assert (
        metrics.registry.get_sample_value(
            P + "reloads_total", {"material": "tls", "result": "failure"}
        )
        == 0.0
    )


def test_the_security_reasons_are_the_decision_tables() -> None:
    table = re.findall(r"^(\w+)\s+403\*", decision_module.__doc__ or "", re.M)
    assert sorted(SECURITY_REASONS) == sorted(table)
