"""Fixtures of the service-account tests: issuer keys (RSA and EC) and a JWKS HTTP server."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.approver.service_accounts.issuer import Issuer, jwks

JWKS_PATH = "/openid/v1/jwks"


@pytest.fixture(scope="session")
def rsa_issuer() -> Issuer:
    return Issuer("RSA")


@pytest.fixture(scope="session")
def rsa_issuer_next() -> Issuer:
    """The issuer's next RSA key (a rotation)."""
    return Issuer("RSA")


@pytest.fixture(scope="session")
def ec_issuer() -> Issuer:
    return Issuer("EC")


class JwksServer:
    """Serves ``/openid/v1/jwks`` from :attr:`document`, counting requests."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.status = 200
        self.fetches = 0
        self.server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url(JWKS_PATH))

    def set_keys(self, *issuers: Issuer) -> None:
        self.document = jwks(*issuers)

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.status != 200:
            return web.json_response({"kind": "Status", "code": self.status}, status=self.status)
        return web.Response(
            body=json.dumps(self.document).encode(), content_type="application/jwk-set+json"
        )


@pytest.fixture
async def jwks_server(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]], rsa_issuer: Issuer
) -> JwksServer:
    """A loopback HTTP server publishing the RSA issuer's JWKS."""
    served = JwksServer(jwks(rsa_issuer))
    app = web.Application()
    app.router.add_get(JWKS_PATH, served.handle)
    served.server = await aiohttp_server(app)
    return served
