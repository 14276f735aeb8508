"""Rotation end to end with the running services: signing keys through ``certs-tooling keys``
and the webhook's serving certificate through ``renew-serving-cert``, no restart anywhere."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from bootstrap_token import read_header
from demo.agent import agent_for
from demo.apiserver import admit, streamspace_review
from demo.stack import ANNOTATION, Stack


def certs(*args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "certs_tooling", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


async def stamp(stack: Stack, n: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        _, pod = await admit(
            session,
            stack.webhook_url,
            streamspace_review(namespace="streamspace", uid=f"rot-{n}", rs_hash=f"{n:09d}"),
            client_ssl=stack.client_ssl,
        )
    return pod


def kid_of(pod: dict[str, Any]) -> str:
    return str(read_header(pod["metadata"]["annotations"][ANNOTATION])["kid"])


async def register(stack: Stack, pod: dict[str, Any]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        status, body = await agent_for(pod).register_once(
            session, stack.approver_url, ssl_context=stack.client_ssl
        )
    return status, str(body.get("reason"))


async def serving_serial(stack: Stack) -> int:
    """The serial of the certificate a new TLS handshake with the webhook presents."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", stack.webhook_port, ssl=stack.client_ssl, server_hostname="localhost"
    )
    ssl_object = writer.get_extra_info("ssl_object")
    assert isinstance(ssl_object, ssl.SSLObject)
    der = ssl_object.getpeercert(binary_form=True)
    writer.close()
    from cryptography import x509

    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


async def eventually(check: Any, *, seconds: float = 15.0) -> Any:
    """Poll ``check`` (async, returns a value or None) until it returns a value."""
    for _ in range(int(seconds / 0.1)):
        value = await check()
        if value is not None:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_signing_key_rotation_without_restart(tmp_path: Path) -> None:
    """Tokens minted before a key rotation still verify; after the old key is retired they do
    not; the webhook signs with the new key and the approver trusts it, neither restarted."""

    async def scenario() -> None:
        stack = Stack(tmp_path, quiet=True, webhook_extra={"reloadIntervalSeconds": 0.1})
        async with stack:
            out = str(stack.pki)
            before = await stamp(stack, 1)
            # Signed by key A, presented only after A's retirement: one fresh token per look,
            # since a token accepted before the approver re-reads the JWKS stays approved.
            spares = [await stamp(stack, 100 + i) for i in range(40)]
            kid_a = kid_of(before)

            certs("keys", "add", "--out", out)
            new_kid = certs("keys", "list", "--out", out)
            kid_b = next(
                line.split()[0] for line in new_kid.splitlines() if " pending " in f" {line} "
            )
            certs("keys", "activate", kid_b, "--out", out)

            async def stamped_by_b() -> dict[str, Any] | None:
                pod = await stamp(stack, 3)
                return pod if kid_of(pod) == kid_b else None

            after = await eventually(stamped_by_b)
            assert kid_b != kid_a
            assert await eventually(lambda: _approved(stack, after)) == (
                200,
                "bootstrap_token_accepted",
            )
            assert await register(stack, before) == (200, "bootstrap_token_accepted")

            certs("keys", "retire", kid_a, "--force", "--out", out)

            async def refused() -> tuple[int, str] | None:
                answer = await register(stack, spares.pop())
                return answer if answer[0] == 403 else None

            assert await eventually(refused, seconds=4.0) == (403, "unknown_kid")
        assert stack.stop() == {"webhook": 0, "approver": 0}

    asyncio.run(scenario())


async def _approved(stack: Stack, pod: dict[str, Any]) -> tuple[int, str] | None:
    answer = await register(stack, pod)
    return answer if answer[0] == 200 else None


def test_webhook_serves_the_renewed_certificate_without_restart(tmp_path: Path) -> None:
    """After renew-serving-cert, new handshakes get the new certificate (same CA) while the
    webhook keeps running."""

    async def scenario() -> tuple[int, int, int]:
        stack = Stack(tmp_path, quiet=True, webhook_extra={"reloadIntervalSeconds": 0.1})
        async with stack:
            old = await serving_serial(stack)
            certs("renew-serving-cert", "--out", str(stack.pki), "--component", "webhook")

            async def changed() -> int | None:
                serial = await serving_serial(stack)
                return serial if serial != old else None

            new = await eventually(changed)
            pid = stack.procs["webhook"].pid
            assert stack.procs["webhook"].poll() is None
            return old, new, pid

    old, new, _ = asyncio.run(scenario())
    assert new != old
