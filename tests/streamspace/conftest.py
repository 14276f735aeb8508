"""Fixtures of the StreamSpace stand-ins' tests: a control plane factory, a fake clock, TLS."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest

from tests.conftest import Pki
from tests.streamspace.control_plane import ControlPlaneConfig, StreamSpaceControlPlane, User

#: AGENT_BOOTSTRAP_KEY of the tests (it must itself be 64 hex characters to pass RequireAuth).
BOOTSTRAP_KEY = "b0" * 32
ADMIN = User("admin", "admin-password", role="admin")
VIEWER = User("viewer", "viewer-password", role="user")
FIXTURE = Path(__file__).parent.parent / "fixtures" / "streamspace" / "registration-request.json"
#: The environment the fixture's request was built from (its README).
FIXTURE_ENV = {
    "AGENT_ID": "k8s-prod-cluster-streamspace-k8s-agent-7d9f8b6c5-bb9n5",
    "PLATFORM": "kubernetes",
    "REGION": "default",
    "NAMESPACE": "streamspace",
    "MAX_SESSIONS": "100",
    "MAX_CPU": "64 cores",
    "MAX_MEMORY": "256Gi",
}


class FakeClock:
    """A settable wall clock (seconds since the epoch)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


class ControlPlaneFactory(Protocol):
    """Starts a control plane stand-in (closed after the test)."""

    def __call__(
        self,
        *,
        tls: bool = False,
        clock: Callable[[], float] | None = None,
        **overrides: Any,
    ) -> Awaitable[StreamSpaceControlPlane]: ...


def load_fixture() -> dict[str, Any]:
    """The captured registration request (tests/fixtures is a byte copy of shared/fixtures)."""
    data: dict[str, Any] = json.loads(FIXTURE.read_bytes())
    return data


@pytest.fixture
def clock() -> FakeClock:
    """A fake wall clock starting now."""
    return FakeClock()


@pytest.fixture(scope="session")
def server_ssl(pki: Pki) -> ssl.SSLContext:
    """The stand-in's TLS: the certs-tooling loopback certificate (127.0.0.1/localhost)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pki.approver_cert), str(pki.approver_key))
    return ctx


@pytest.fixture
async def control_plane_factory(
    server_ssl: ssl.SSLContext,
) -> AsyncIterator[ControlPlaneFactory]:
    """``await factory(tls=..., clock=..., **config_or_server_overrides)``."""
    started: list[StreamSpaceControlPlane] = []
    server_keys = {"pong_wait", "ping_period", "stale_after", "stale_check_interval"}

    async def factory(
        *, tls: bool = False, clock: Callable[[], float] | None = None, **overrides: Any
    ) -> StreamSpaceControlPlane:
        server_kwargs = {k: overrides.pop(k) for k in list(overrides) if k in server_keys}
        config = ControlPlaneConfig(
            **{
                "bootstrap_key": BOOTSTRAP_KEY,
                "users": (ADMIN, VIEWER),
                "bcrypt_cost": 4,
                **overrides,
            }
        )
        cp = StreamSpaceControlPlane(
            config,
            ssl_context=server_ssl if tls else None,
            clock=clock or time.time,
            **server_kwargs,
        )
        await cp.start()
        started.append(cp)
        return cp

    yield factory
    for cp in started:
        await cp.close()


@pytest.fixture
async def control_plane(
    control_plane_factory: ControlPlaneFactory, clock: FakeClock
) -> StreamSpaceControlPlane:
    """A plain-HTTP stand-in on the fake clock, shared key set, an admin and a plain user."""
    return await control_plane_factory(clock=clock)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client (no cookies kept, Python's default headers)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def login(
    http: aiohttp.ClientSession, cp: StreamSpaceControlPlane, user: User = ADMIN
) -> str:
    """``POST /api/v1/auth/login``; the token."""
    async with http.post(
        cp.url + "/api/v1/auth/login", json={"username": user.username, "password": user.password}
    ) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    token: str = body["token"]
    return token


async def wait_until(
    predicate: Callable[[], bool],
    timeout: float = 5.0,  # noqa: ASYNC109 - the helper's own deadline
) -> None:
    """Poll ``predicate`` every 10 ms until it holds (``TimeoutError`` after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling state owned by other tasks
            await asyncio.sleep(0.01)


@pytest.fixture
def fixture_request() -> dict[str, Any]:
    """The captured registration request of StreamSpace's agent."""
    return load_fixture()
