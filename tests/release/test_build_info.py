"""The webhook's metrics expose ``agent_bootstrap_webhook_build_info{version="<version>"} 1``,
on its own registry and summed from the workers' multiprocess files (``workers > 1``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.release.project import VERSION
from webhook.metrics import PREFIX, WebhookMetrics

NAME = PREFIX + "build_info"


def _series(exposition: str) -> list[str]:
    return [line for line in exposition.splitlines() if line.startswith(NAME)]


def test_the_registry_exposes_the_version() -> None:
    registry = CollectorRegistry()
    metrics = WebhookMetrics(registry=registry)
    assert registry.get_sample_value(NAME, {"version": VERSION}) == 1.0
    assert metrics.sample("build_info", {"version": VERSION}) == 1.0
    exposition = generate_latest(registry).decode()
    assert _series(exposition) == [f'{NAME}{{version="{VERSION}"}} 1.0']
    assert f"# TYPE {NAME} gauge" in exposition


def test_the_workers_sum_shows_one_series(tmp_path: Path) -> None:
    """Two worker processes write their multiprocess files; the supervisor's collector (as in
    webhook.workers) shows one series without a pid label."""
    script = textwrap.dedent(
        """
        from prometheus_client import CollectorRegistry
        from webhook.metrics import WebhookMetrics

        WebhookMetrics(registry=CollectorRegistry())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    assert len(list(tmp_path.glob("*.db"))) >= 2
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    assert _series(generate_latest(registry).decode()) == [f'{NAME}{{version="{VERSION}"}} 1.0']
