"""Rotation under load over real TLS: key and certificate swapped while requests run.

serve() runs on loopback with its material in a kubelet-style Secret volume and a short
``reloadIntervalSeconds``. Clients keep posting the real StreamSpace review (on kept-alive and on
fresh connections) while the volume is swapped to a new signing key and a new certificate. No
request may fail; the new ``kid`` must appear in ``auditAnnotations``; a new handshake must see
the new certificate's serial. Loops are bounded by counts; nothing asserts on time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jsonpatch
from cryptography import x509

from bootstrap_token import KeySet, SigningKey, VerificationPolicy, verify
from tests.conftest import Pki
from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import ANNOTATION, Live
from tests.webhook.volumes import issue_serving_cert

POLICY = VerificationPolicy(issuer="agent-bootstrap-webhook", audience="agent-approver")


@dataclass
class Load:
    """What the client loops saw."""

    answers: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    kids: set[str] = field(default_factory=set)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def client_loop(port: int, context: ssl.SSLContext, load: Load, *, fresh: bool) -> None:
    """Post reviews until told to stop (at most 5,000), on one kept-alive or fresh connections."""
    connector = aiohttp.TCPConnector(ssl=context, force_close=fresh, limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(5000):
            if load.stop.is_set():
                return
            review = streamspace_agent_review()
            try:
                async with session.post(f"https://localhost:{port}/mutate", json=review) as resp:
                    if resp.status != 200:
                        load.failures.append(f"status {resp.status}")
                        continue
                    answer = await resp.json()
            except (aiohttp.ClientError, OSError) as exc:
                load.failures.append(repr(exc))
                continue
            response = answer["response"]
            if response.get("auditAnnotations", {}).get("decision") != "stamped":
                load.failures.append(f"not stamped: {response.get('auditAnnotations')}")
                continue
            load.kids.add(response["auditAnnotations"]["kid"])
            load.answers.append({"review": review, "response": response})


async def handshake_serial(port: int, context: ssl.SSLContext) -> int:
    """The serial number of the certificate a new TLS handshake presents."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


async def until(condition: Any, *, tries: int = 1000) -> bool:
    """Poll ``condition()`` every 10 ms, at most ``tries`` times; True once it holds."""
    for _ in range(tries):
        if await condition() if asyncio.iscoroutinefunction(condition) else condition():
            return True
        await asyncio.sleep(0.01)
    return False


class TestRotationUnderLoad:
    async def test_key_and_certificate_swap_without_failures(
        self, live: Live, pki: Pki, client_ssl: ssl.SSLContext
    ) -> None:
        """Swapping key and certificate mid-load: zero failures, new kid, new serial."""
        old_key = SigningKey.from_file(pki.signing_key)
        old_serial = await handshake_serial(live.port, client_ssl)
        load = Load()
        clients = [
            asyncio.create_task(client_loop(live.port, client_ssl, load, fresh=fresh))
            for fresh in (False, False, False, True)
        ]
        assert await until(lambda: len(load.answers) >= 20)

        new_key = SigningKey.generate()
        cert, key, new_serial = issue_serving_cert(pki.ca_cert, pki.ca_key)
        live.volume.write({"signing.key": new_key.private_pem(), "tls.crt": cert, "tls.key": key})
        seen = len(load.answers)
        assert await until(lambda: new_key.kid in load.kids)

        async def new_handshake() -> bool:
            return await handshake_serial(live.port, client_ssl) == new_serial

        assert await until(new_handshake)
        assert await until(lambda: len(load.answers) >= seen + 50)
        load.stop.set()
        await asyncio.gather(*clients)

        assert load.failures == []
        assert load.kids == {old_key.kid, new_key.kid}
        assert old_serial != new_serial
        # Every token verifies with the JWKS that lists both keys, as during a real rotation.
        keys = KeySet([old_key.public_key, new_key.public_key])
        for item in load.answers[:: max(1, len(load.answers) // 50)]:
            patch = json.loads(base64.b64decode(item["response"]["patch"]))
            pod = jsonpatch.apply_patch(item["review"]["request"]["object"], patch)
            token = pod["metadata"]["annotations"][ANNOTATION]
            claims = verify(token, keys, POLICY, now=claims_time(token))
            assert claims.jti == item["response"]["auditAnnotations"]["jti"]
        # The audit trail names the kid of each token, and never the token.
        assert {e.kid for e in live.audit.events} == {old_key.kid, new_key.kid}

    async def test_broken_swap_keeps_serving(
        self, live: Live, pki: Pki, client_ssl: ssl.SSLContext
    ) -> None:
        """A half-updated pair and a truncated key are refused; the old material keeps serving."""
        old_key = SigningKey.from_file(pki.signing_key)
        old_serial = await handshake_serial(live.port, client_ssl)
        cert, _, _ = issue_serving_cert(pki.ca_cert, pki.ca_key)
        live.volume.write(
            {
                "signing.key": b"-----BEGIN PRIVATE KEY-----\nMC4CAQ",
                "tls.crt": cert,
                "tls.key": pki.webhook_key.read_bytes(),
            }
        )
        load = Load()
        clients = [asyncio.create_task(client_loop(live.port, client_ssl, load, fresh=True))]
        assert await until(lambda: len(load.answers) >= 30)
        load.stop.set()
        await asyncio.gather(*clients)
        assert load.failures == []
        assert load.kids == {old_key.kid}
        assert await handshake_serial(live.port, client_ssl) == old_serial


def claims_time(token: str) -> int:
    """The token's own iat, so verification does not depend on the wall clock."""
    payload = token.split(".")[1]
    iat: int = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["iat"]
    return iat
