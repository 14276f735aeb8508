"""Process plumbing: event loop choice, the metrics listener, start-up material, the supervisor."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import Pki
from tests.webhook.conftest import make_settings
from webhook import workers
from webhook.config import EventLoop
from webhook.credentials import Credentials, SigningMaterial
from webhook.run import load_initial, loop_factory, start_metrics
from webhook.tls import MaterialError
from webhook.workers import MAX_CRASHES, Supervisor


class TestLoopFactory:
    def test_asyncio(self) -> None:
        """eventLoop: asyncio uses asyncio's own loop."""
        assert loop_factory(EventLoop.ASYNCIO) is None

    def test_auto_and_uvloop(self) -> None:
        """auto picks uvloop when installed; uvloop insists on it."""
        uvloop = pytest.importorskip("uvloop")
        assert loop_factory(EventLoop.AUTO) is uvloop.new_event_loop
        assert loop_factory(EventLoop.UVLOOP) is uvloop.new_event_loop


class TestLoadInitial:
    def test_missing_key_is_waited_for(self, tmp_path: Path, pki: Pki) -> None:
        """No key file: certificate loaded, no signing key, not ready (no exception)."""
        settings = make_settings(tmp_path, tlsCertFile=pki.webhook_cert, tlsKeyFile=pki.webhook_key)
        credentials = load_initial(settings)
        assert credentials.tls is not None
        assert credentials.signing is None
        assert not credentials.ready

    def test_bad_key_is_an_error(self, tmp_path: Path, pki: Pki) -> None:
        """A key file that exists but is not Ed25519 stops the start (names the field)."""
        settings = make_settings(
            tmp_path,
            signingKeyFile=pki.webhook_key,
            tlsCertFile=pki.webhook_cert,
            tlsKeyFile=pki.webhook_key,
        )
        with pytest.raises(MaterialError, match=r"^signingKeyFile "):
            load_initial(settings)

    def test_pem_file(self, tmp_path: Path, pki: Pki) -> None:
        """tlsPemFile alone is enough for the certificate."""
        settings = make_settings(
            tmp_path,
            signingKeyFile=pki.signing_key,
            tlsCertFile=None,
            tlsKeyFile=None,
            tlsPemFile=pki.layout.webhook_pair,
        )
        assert load_initial(settings).ready

    def test_repr_shows_ids_only(self, pki: Pki, signing_key: Any) -> None:
        """Credentials print their kid and serial, never key material."""
        text = repr(Credentials(signing=SigningMaterial.of(signing_key)))
        assert signing_key.kid in text
        assert "PRIVATE" not in text


class TestStartMetrics:
    async def test_port_in_use_is_logged_not_fatal(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A metrics port that cannot be bound is an error log; reviews go on being served."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            settings = make_settings(tmp_path, metricsHost="127.0.0.1", metricsPort=port)
            with caplog.at_level(logging.ERROR, logger="webhook.run"):
                assert await start_metrics(settings, CollectorRegistry()) is None
        assert f"metricsPort: cannot listen on 127.0.0.1:{port}" in caplog.text


class FakeProcess:
    """Stands in for a worker process that has already exited."""

    def __init__(self) -> None:
        self.pid = 4_000_000
        self.exitcode = 1

    def is_alive(self) -> bool:
        return False


class TestSupervisor:
    def test_gives_up_after_repeated_crashes(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Workers that die right after start are restarted, until MAX_CRASHES in a row."""
        supervisor = Supervisor(make_settings(tmp_path, workers=2))
        started: list[int] = []

        def start(index: int) -> None:
            started.append(index)
            supervisor.workers[index] = cast(BaseProcess, FakeProcess())
            supervisor.started[index] = time.monotonic()

        monkeypatch.setattr(supervisor, "start", start)
        monkeypatch.setattr(workers, "mark_process_dead", lambda pid: None)
        for index in range(2):
            start(index)
        rounds = 0
        while supervisor.reap():
            rounds += 1
            assert rounds < 20
        assert supervisor.crashes == MAX_CRASHES
        assert len(started) == 2 + MAX_CRASHES - 1

    async def test_stop_without_workers(self, tmp_path: Path) -> None:
        """Stopping with nothing running returns at once."""
        await asyncio.wait_for(Supervisor(make_settings(tmp_path, workers=2)).stop(), 5)
