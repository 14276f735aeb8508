"""The command line and the real server: migrate, bad configuration, HTTPS on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from approver.__main__ import main
from approver.config import ApproverSettings
from approver.serve import serve
from bootstrap_token import SigningKey
from demo.stack import free_port
from tests.approver.helpers import (
    AGENT_ID,
    AGENT_ID_PREFIX,
    CLUSTER,
    TRUST,
    mint_token,
    registration_body,
)
from tests.conftest import Pki

PREFIX = "AGENT_BOOTSTRAP_APPROVER_"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No approver variable from the outer environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


class TestMain:
    def test_migrate(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`migrate` creates the schema in the configured database and exits 0."""
        db = tmp_path / "approver.db"
        config = tmp_path / "approver.yaml"
        config.write_text(f"databaseUrl: sqlite+aiosqlite:///{db}\n", encoding="utf-8")
        assert main(["migrate", "--config", str(config)]) == 0
        assert {"agents", "token_uses", "alembic_version"} <= tables(db)
        assert "database migrated" in capsys.readouterr().err

    def test_api_keys_subcommand(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`api-keys` runs approver.api_keys_cli against the configured database."""
        db = tmp_path / "approver.db"
        config = tmp_path / "approver.yaml"
        config.write_text(f"databaseUrl: sqlite+aiosqlite:///{db}\n", encoding="utf-8")
        assert main(["migrate", "--config", str(config)]) == 0
        assert main(["--config", str(config), "api-keys", "create", "--name", "ci"]) == 0
        key = capsys.readouterr().out.strip()
        assert key.startswith("abk_")
        assert main(["--config", str(config), "api-keys", "list", "--json"]) == 0
        listed = capsys.readouterr().out
        assert '"ci"' in listed
        assert key not in listed
        assert main(["--config", str(config), "api-keys", "revoke", "nosuchkey000000"]) == 3

    def test_bad_config_exits_2_naming_the_field(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bad setting from the file exits 2 and names the file key and the file."""
        config = tmp_path / "approver.yaml"
        config.write_text("retryAfterSeconds: none\n", encoding="utf-8")
        assert main(["--config", str(config), "migrate"]) == 2
        err = capsys.readouterr().err
        assert f"retryAfterSeconds (config file {config}): " in err
        assert PREFIX not in err

    def test_unusable_jwks_exits_2(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A JWKS file that holds no Ed25519 key stops the service at start (exit 2)."""
        jwks = tmp_path / "jwks.json"
        jwks.write_text('{"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}', encoding="utf-8")
        monkeypatch.setenv(PREFIX + "AUTO_APPROVE__ENABLED", "true")
        monkeypatch.setenv(PREFIX + "TRUST__NAMESPACES", '["streamspace"]')
        monkeypatch.setenv(PREFIX + "TOKEN__JWKS_FILE", str(jwks))
        monkeypatch.setenv(PREFIX + "DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
        assert main([]) == 2
        err = capsys.readouterr().err
        assert "token.jwksFile" in err
        assert "not an Ed25519" in err

    def test_unreachable_database_exits_1(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`migrate` against a database it cannot open exits 1."""
        url = f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'a.db'}"
        monkeypatch.setenv(PREFIX + "DATABASE_URL", url)
        assert main(["migrate"]) == 1
        assert "database unavailable" in capsys.readouterr().err

    def test_a_port_in_use_exits_1_with_one_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Trial finding: the approver crashed with a traceback when its port was taken."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            monkeypatch.setenv(PREFIX + "DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
            monkeypatch.setenv(PREFIX + "HOST", "127.0.0.1")
            monkeypatch.setenv(PREFIX + "PORT", str(port))
            monkeypatch.setenv(PREFIX + "METRICS_PORT", "0")
            assert main(["serve"]) == 1
        err = capsys.readouterr().err
        assert f"cannot listen on 127.0.0.1:{port}" in err
        assert "Traceback" not in err

    def test_python_dash_m(self, tmp_path: Path) -> None:
        """`python -m approver migrate` runs as a real process, configured by the environment."""
        db = tmp_path / "approver.db"
        env = {**os.environ, PREFIX + "DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
        done = subprocess.run(
            [sys.executable, "-m", "approver", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "agents" in tables(db)


class TestServe:
    @pytest.fixture
    def tls_settings(self, pki: Pki, tmp_path: Path) -> ApproverSettings:
        return ApproverSettings(
            auto_approve={"enabled": True},
            trust=TRUST,
            token={"jwks_file": pki.jwks, "clusters": [CLUSTER]},
            agent_id_prefix=AGENT_ID_PREFIX,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}",
            tls_cert_file=pki.approver_cert,
            tls_key_file=pki.approver_key,
            host="127.0.0.1",
            port=free_port(),
        )

    async def test_https_registration_and_clean_stop(
        self,
        tls_settings: ApproverSettings,
        pki: Pki,
        client_ssl: ssl.SSLContext,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """serve() migrates, answers a StreamSpace registration over TLS, and stops cleanly;
        auto-approving without the live-pod check is warned about at start."""
        stop = asyncio.Event()
        server = asyncio.create_task(serve(tls_settings, stop=stop))
        base = f"https://localhost:{tls_settings.port}"
        token = mint_token(SigningKey.from_file(pki.signing_key), now=int(time.time()))
        try:
            async with aiohttp.ClientSession() as session:
                await _wait_ready(session, f"{base}/healthz", client_ssl, server)
                async with session.post(
                    f"{base}/api/v1/agents/register",
                    json=registration_body(),
                    headers={"X-Agent-API-Key": token},
                    ssl=client_ssl,
                ) as response:
                    assert response.status == 200
                    body = await response.json()
            assert (body["agentId"], body["status"], body["approvalMethod"]) == (
                AGENT_ID,
                "active",
                "namespace",
            )
            _, writer = await asyncio.open_connection(
                "127.0.0.1", tls_settings.port, ssl=client_ssl, server_hostname="localhost"
            )
            assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
            writer.close()
            await writer.wait_closed()
        finally:
            stop.set()
            await asyncio.wait_for(server, timeout=10)
        assert server.exception() is None
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(w.startswith("auto-approving without kubernetes.enabled") for w in warnings)

    @pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
    async def test_tls_1_1_is_refused(
        self, tls_settings: ApproverSettings, pki: Pki, client_ssl: ssl.SSLContext
    ) -> None:
        """A client that speaks at most TLS 1.1 cannot complete a handshake (the client itself
        allows TLS 1.1 at security level 0, so the refusal is the server's)."""
        stop = asyncio.Event()
        server = asyncio.create_task(serve(tls_settings, stop=stop))
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(pki.ca_cert)
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        try:
            async with aiohttp.ClientSession() as session:
                await _wait_ready(
                    session, f"https://localhost:{tls_settings.port}/healthz", client_ssl, server
                )
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                await asyncio.open_connection(
                    "127.0.0.1", tls_settings.port, ssl=old, server_hostname="localhost"
                )
        finally:
            stop.set()
            await asyncio.wait_for(server, timeout=10)


async def _wait_ready(
    session: aiohttp.ClientSession, url: str, context: ssl.SSLContext, server: asyncio.Task[None]
) -> None:
    deadline = time.monotonic() + 10
    while True:
        if server.done():
            server.result()  # raises what stopped the server
        try:
            async with session.get(url, ssl=context) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)


class TestAuditVerify:
    @pytest.fixture
    def config(self, tmp_path: Path) -> Path:
        path = tmp_path / "approver.yaml"
        path.write_text(f"databaseUrl: sqlite+aiosqlite:///{tmp_path / 'a.db'}\n")
        return path

    async def _events(self, config: Path, count: int) -> None:
        from approver.store import Store
        from bootstrap_token import AuditEvent

        store = Store.open(f"sqlite+aiosqlite:///{config.parent / 'a.db'}")
        await store.migrate()
        try:
            for n in range(count):
                async with store.transaction() as tx:
                    await tx.append_audit(
                        AuditEvent(
                            component="approver",
                            event="agent.register",
                            decision="approved",
                            reason="bootstrap_token_accepted",
                            agent_id=f"agent-{n}",
                        )
                    )
        finally:
            await store.close()

    async def test_intact_chain(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`audit verify` on an untouched chain exits 0 and says how many events it checked."""
        await self._events(config, 4)
        assert await asyncio.to_thread(main, ["--config", str(config), "audit", "verify"]) == 0
        assert "audit chain intact: 4 event(s)" in capsys.readouterr().out

    async def test_edited_event_is_named(
        self, config: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Editing a stored event makes `audit verify` exit 3 and name that event."""
        await self._events(config, 5)
        with sqlite3.connect(config.parent / "a.db") as conn:
            conn.execute("UPDATE audit_events SET decision = 'rejected' WHERE seq = 3")
        code = await asyncio.to_thread(main, ["--config", str(config), "audit", "verify", "--json"])
        assert code == 3
        report = json.loads(capsys.readouterr().out)
        assert report["intact"] is False
        assert (report["broken"]["seq"], report["broken"]["problem"], report["checked"]) == (
            3,
            "hash",
            2,
        )

    async def test_deleted_event_is_named(
        self, config: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Deleting a stored event is a gap at its sequence number."""
        await self._events(config, 5)
        with sqlite3.connect(config.parent / "a.db") as conn:
            conn.execute("DELETE FROM audit_events WHERE seq = 2")
        assert await asyncio.to_thread(main, ["--config", str(config), "audit", "verify"]) == 3
        assert "BROKEN at event 2 (gap)" in capsys.readouterr().out


class TestServeWithKubernetes:
    async def test_kubeconfig_pod_binding_and_ghost_cleanup(
        self,
        pki: Pki,
        tmp_path: Path,
        client_ssl: ssl.SSLContext,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """serve() with kubernetes.enabled and a kubeconfig: registration reads the live pod
        through kubernetes-asyncio, and deleting the pod makes the agent inactive."""
        from tests.approver.helpers import ANNOTATION, NAMESPACE, OWNER, POD_NAME
        from tests.kube_api import KubeApi, make_pod, write_kubeconfig

        caplog.set_level(logging.INFO, logger="approver.serve")

        admin = tmp_path / "admin-tokens"
        admin.write_text("alice:alice-admin-token-0123456789\n")
        async with KubeApi() as kube:
            settings = ApproverSettings(
                auto_approve={"enabled": True},
                trust=TRUST,
                token={"jwks_file": pki.jwks, "clusters": [CLUSTER]},
                agent_id_prefix=AGENT_ID_PREFIX,
                database_url=f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}",
                admin_tokens_file=admin,
                tls_cert_file=pki.approver_cert,
                tls_key_file=pki.approver_key,
                host="127.0.0.1",
                port=free_port(),
                kubernetes={
                    "enabled": True,
                    "kubeconfig": write_kubeconfig(kube, tmp_path / "kubeconfig"),
                    "watch_timeout_seconds": 10,
                },
            )
            token = mint_token(SigningKey.from_file(pki.signing_key), now=int(time.time()))
            kube.add_pod(
                make_pod(
                    NAMESPACE,
                    POD_NAME,
                    annotations={ANNOTATION: token},
                    owner=OWNER,
                    generate_name=POD_NAME[:-5],
                )
            )
            stop = asyncio.Event()
            server = asyncio.create_task(serve(settings, stop=stop))
            base = f"https://localhost:{settings.port}"
            try:
                async with aiohttp.ClientSession() as session:
                    await _wait_ready(session, f"{base}/healthz", client_ssl, server)
                    async with session.post(
                        f"{base}/api/v1/agents/register",
                        json=registration_body(),
                        headers={"X-Agent-API-Key": token},
                        ssl=client_ssl,
                    ) as response:
                        assert response.status == 200
                        assert (await response.json())["apiKey"].startswith("aga_")
                    kube.delete_pod(NAMESPACE, POD_NAME)
                    deadline = time.monotonic() + 20
                    while True:
                        async with session.get(
                            f"{base}/api/v1/admin/agents/{AGENT_ID}",
                            headers={"Authorization": "Bearer alice-admin-token-0123456789"},
                            ssl=client_ssl,
                        ) as response:
                            agent = (await response.json())["agent"]
                        if agent["status"] == "inactive" or time.monotonic() > deadline:
                            break
                        await asyncio.sleep(0.05)
                assert (agent["status"], agent["reason"]) == ("inactive", "pod_deleted")
                assert agent["podUid"]
                assert any(r.path.endswith(f"/pods/{POD_NAME}") for r in kube.requests)
            finally:
                stop.set()
                await asyncio.wait_for(server, timeout=10)
        messages = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("approver listening on") for m in messages)
        assert not any("auto-approving without kubernetes.enabled" in m for m in messages)
