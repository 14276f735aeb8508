"""The agent proxy against a real approver over real TLS (issue 16, item 5): it forwards a
registration as it came, obtains the agent's certificate from the approved answer's key, keeps
it across a restart, and renews it with the certificate itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import stat
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from agent_proxy.__main__ import run
from agent_proxy.config import ConfigError, ProxySettings, load_settings
from agent_proxy.enroll import Enrollment, EnrollmentError, agent_id_of
from agent_proxy.server import create_app
from approver.domain.agent_keys import is_agent_key
from demo.stack import free_port
from tests.approver.agent_certs.pki import key_pem, sign_leaf, write_ca
from tests.approver.agent_certs.serving import Served, admin, call, running_approver
from tests.approver.helpers import registration_body
from tests.conftest import Pki

AGENT = "k8s-prod-agent-proxied"
PLACEHOLDER = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


@pytest.fixture
async def approver(pki: Pki, tmp_path: Path) -> AsyncIterator[Served]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}"
    async with running_approver(url, pki, tmp_path) as served:
        yield served


def proxy_settings(served: Served, state: Path) -> ProxySettings:
    return ProxySettings(
        upstream_url=served.url,
        ca_file=served.pki.ca_cert,
        listen_port=free_port(),
        state_dir=state,
        retry_seconds=0.1,
    )


@contextlib.asynccontextmanager
async def running_proxy(settings: ProxySettings) -> AsyncIterator[str]:
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop))
    base = f"http://127.0.0.1:{settings.listen_port}"
    deadline = time.monotonic() + 10
    while True:
        assert not task.done(), task
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", settings.listen_port)
        except OSError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        else:
            writer.close()
            break
    try:
        yield base
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def register(base: str, key: str | None = None) -> tuple[int, dict[str, Any]]:
    """As StreamSpace's agent does: the JSON body and ``X-Agent-Api-Key``."""
    headers = {"X-Agent-Api-Key": key} if key else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            base + "/api/v1/agents/register", json=registration_body(AGENT), headers=headers
        ) as answer,
    ):
        return answer.status, json.loads(await answer.read())


async def approved_through(base: str, served: Served) -> dict[str, Any]:
    """Register (pending), approve by the admin API, register again with the same credential
    (an unstamped pod's placeholder, its UID): the approved answer, which carries the key."""
    status, first = await register(base, PLACEHOLDER)
    assert status == 202, first
    status, _ = await call(served, "POST", f"/api/v1/admin/agents/{AGENT}/approve", headers=admin())
    assert status == 200
    status, answer = await register(base, PLACEHOLDER)
    assert status == 200, answer
    return answer


async def test_registration_passes_through_and_the_certificate_follows(
    approver: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state = tmp_path / "proxy-state"
    async with running_proxy(proxy_settings(approver, state)) as base:
        answer = await approved_through(base, approver)
    assert is_agent_key(answer["apiKey"])  # the agent gets its answer as the approver gave it
    certificate = x509.load_pem_x509_certificate((state / "tls.crt").read_bytes())
    assert agent_id_of(certificate) == AGENT
    certificate.verify_directly_issued_by(approver.ca.certificate)
    assert stat.S_IMODE((state / "tls.key").stat().st_mode) == 0o600
    _, listed = await call(
        approver, "GET", f"/api/v1/admin/agents/{AGENT}/certificates", headers=admin()
    )
    assert [c["serial"] for c in listed["certificates"]] == [format(certificate.serial_number, "x")]
    assert listed["certificates"][0]["issuedWith"] == "api_key"
    assert answer["apiKey"] not in caplog.text


async def test_renewal_with_the_certificate_and_restart(approver: Served, tmp_path: Path) -> None:
    state = tmp_path / "proxy-state"
    settings = proxy_settings(approver, state)
    async with running_proxy(settings) as base:
        await approved_through(base, approver)
    first = x509.load_pem_x509_certificate((state / "tls.crt").read_bytes())

    # a new proxy (a restarted container) takes the certificate up, and renews with it when
    # its clock says renewAfter has passed: no key known to it
    async with aiohttp.ClientSession() as session:
        now = [time.time()]
        renewed: list[Enrollment] = []

        def clock() -> float:
            """Jumps to renewAfter; once renewed, it is the real one again."""
            return now[0] if not renewed or renewed[0].issued == 0 else time.time()

        enrollment = Enrollment(settings, session, clock=clock)
        renewed.append(enrollment)
        enrollment.load()
        assert enrollment.held is not None
        assert enrollment.held.serial == format(first.serial_number, "x")
        assert enrollment.agent_id == AGENT
        renewing = asyncio.create_task(enrollment.run())
        now[0] = enrollment.held.renew_at + 1
        enrollment._wake.set()
        deadline = time.monotonic() + 10
        while enrollment.issued == 0:
            assert time.monotonic() < deadline, "not renewed"
            await asyncio.sleep(0.05)
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
    second = x509.load_pem_x509_certificate((state / "tls.crt").read_bytes())
    assert second.serial_number != first.serial_number
    assert second.public_key() != first.public_key()  # a new key pair
    _, listed = await call(
        approver, "GET", f"/api/v1/admin/agents/{AGENT}/certificates", headers=admin()
    )
    assert [c["issuedWith"] for c in listed["certificates"]] == ["api_key", "certificate"]


async def test_approver_unreachable_is_502(tmp_path: Path, pki: Pki) -> None:
    settings = ProxySettings(
        upstream_url=f"https://127.0.0.1:{free_port()}",
        ca_file=pki.ca_cert,
        listen_port=free_port(),
        state_dir=tmp_path / "state",
    )
    async with running_proxy(settings) as base:
        async with (
            aiohttp.ClientSession() as http,
            http.post(base + "/api/v1/agents/register", json={}) as answer,
        ):
            assert answer.status == 502
            assert (await answer.json())["error"] == "approver_unavailable"
        async with (
            aiohttp.ClientSession() as http,
            http.get(base + "/api/v1/agents/other") as answer,
        ):
            assert answer.status == 404


def test_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENT_BOOTSTRAP_PROXY_UPSTREAM_URL", "http://approver:8444")
    monkeypatch.setenv("AGENT_BOOTSTRAP_PROXY_CA_FILE", str(tmp_path / "missing.crt"))
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "AGENT_BOOTSTRAP_PROXY_UPSTREAM_URL: Value error, must be an https:// URL" in str(
        error.value
    )
    assert "AGENT_BOOTSTRAP_PROXY_CA_FILE" in str(error.value)


@contextlib.asynccontextmanager
async def proxy_app(settings: ProxySettings) -> AsyncIterator[tuple[str, Enrollment]]:
    """The proxy's application with its Enrollment at hand."""
    async with aiohttp.ClientSession() as session:
        enrollment = Enrollment(settings, session)
        enrollment.load()
        runner = web.AppRunner(create_app(enrollment, session, settings.upstream_url))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.listen_port).start()
        try:
            yield f"http://127.0.0.1:{settings.listen_port}", enrollment
        finally:
            await runner.cleanup()


async def test_a_certificate_the_handshake_refuses_is_dropped(
    approver: Served, tmp_path: Path
) -> None:
    """The state folder holds a valid-looking certificate of a CA the approver no longer
    trusts (after agent-ca finish --force): registrations still pass (they go without it), a
    heartbeat drops it and goes without, and the agent's next approved registration enrolls
    anew."""
    state = tmp_path / "proxy-state"
    state.mkdir()
    foreign = write_ca(tmp_path / "foreign-ca", name="previous-agent-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    (state / "tls.crt").write_bytes(
        sign_leaf(
            foreign.issued,
            key.public_key(),
            uri=f"agent-bootstrap://default/ns/-/pod/-/agent/{AGENT}",
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            not_before=now - timedelta(minutes=5),
            not_after=now + timedelta(hours=20),
        )
    )
    (state / "tls.key").write_bytes(key_pem(key))
    async with proxy_app(proxy_settings(approver, state)) as (base, enrollment):
        assert enrollment.held is not None  # taken up from the state folder
        status, answer = await register(base, PLACEHOLDER)
        assert status == 202, answer  # not 502: registrations go without the certificate
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{base}/api/v1/agents/{AGENT}/heartbeat", json={}) as beat,
        ):
            assert beat.status != 502
        assert enrollment.held is None
        assert not (state / "tls.crt").exists()  # a restart does not take it up again
        await call(approver, "POST", f"/api/v1/admin/agents/{AGENT}/approve", headers=admin())
        status, answer = await register(base, PLACEHOLDER)
        assert status == 200
        assert enrollment.held is not None
        assert enrollment.held.certificate.issuer == approver.ca.certificate.subject


async def test_an_answer_without_a_certificate_does_not_kill_renewal(
    approver: Served, tmp_path: Path
) -> None:
    """A 200 without ``certificate`` (a proxy in between, a bug) is an enrollment error, and
    the renewal loop goes on."""
    settings = proxy_settings(approver, tmp_path / "state")

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"renewAfter": "soon"})

    app = web.Application()
    app.router.add_post("/api/v1/agents/{agent_id}/certificate", answer)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        enrollment = Enrollment(
            settings.model_copy(update={"upstream_url": str(server.make_url("")).rstrip("/")}),
            session,
        )
        enrollment.learn(agent_id=AGENT, api_key="aga_x")
        with pytest.raises(EnrollmentError, match="without a certificate"):
            await enrollment.enroll(with_key=True)


class Forwarder:
    """A TCP forwarder in front of the approver (a Service during a rolling restart): it
    closes the next ``drop`` connections at once, then pipes bytes both ways."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.drop = 0
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Forwarder:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.drop > 0:
            self.drop -= 1
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_a_dropped_connection_keeps_the_certificate(approver: Served, tmp_path: Path) -> None:
    """One connection closed by the network (an approver restarting) is not a refused
    certificate: the proxy probes, keeps it, and sends the request again with it."""
    state = tmp_path / "proxy-state"
    async with running_proxy(proxy_settings(approver, state)) as base:
        await approved_through(base, approver)
    serial = x509.load_pem_x509_certificate((state / "tls.crt").read_bytes()).serial_number
    async with Forwarder(approver.port) as forwarder:
        settings = proxy_settings(approver, state).model_copy(
            update={"upstream_url": f"https://localhost:{forwarder.port}"}
        )
        async with proxy_app(settings) as (base, enrollment):
            assert enrollment.held is not None
            forwarder.drop = 1
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{base}/api/v1/agents/{AGENT}/heartbeat", json={}) as beat,
            ):
                assert beat.status != 502
            assert forwarder.drop == 0  # the connection was dropped
            assert enrollment.held is not None
            assert enrollment.held.certificate.serial_number == serial
