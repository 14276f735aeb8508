"""The connection guard (bootstrap_token.http_guard) on a loopback server: a head's deadline,
the cap on incomplete connections, and answers to unparseable requests without their bytes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from bootstrap_token.http_guard import ConnectionGuard, GuardedAppRunner, GuardLimits

SECRET = "abk_7h3s3cr3tv4lu3th4tmustn3v3r4pp34r"


@dataclass
class Served:
    port: int
    guard: ConnectionGuard


async def ok(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="ok")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(0.6)
    return web.Response(text="slow")


async def echo_ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str(message.data)
    return ws


async def start(limits: GuardLimits) -> tuple[GuardedAppRunner, Served]:
    app = web.Application()
    app.router.add_route("*", "/", ok)
    app.router.add_get("/slow", slow)
    app.router.add_get("/ws", echo_ws)
    guard = ConnectionGuard(limits)
    runner = GuardedAppRunner(app, guard=guard, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, Served(int(runner.addresses[0][1]), guard)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    runner, served = await start(
        GuardLimits(head_timeout_seconds=0.6, max_incomplete=3, stalled_after_seconds=0.15)
    )
    try:
        yield served
    finally:
        await runner.cleanup()


async def connect(
    port: int, first: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if first:
        writer.write(first)
        await writer.drain()
    return reader, writer


async def answer(
    reader: asyncio.StreamReader,
) -> tuple[int, dict[str, str], bytes]:
    """The status, header fields and body of one answer, read to the connection's end."""
    raw = await asyncio.wait_for(reader.read(), 5)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


PARTIAL = b"GET / HTTP/1.1\r\nHost: x\r\nX-Partial: "


class TestHeadDeadline:
    async def test_a_head_that_stalls_gets_408_and_the_connection_closes(
        self, served: Served
    ) -> None:
        reader, writer = await connect(served.port, PARTIAL)
        status, fields, body = await answer(reader)
        assert status == 408
        assert fields["content-type"].startswith("application/json")
        assert json.loads(body)["error"] == "request_timeout"
        assert served.guard.counts.head_timeouts == 1
        assert served.guard.incomplete == 0
        writer.close()

    async def test_a_connection_that_sends_nothing_gets_408(self, served: Served) -> None:
        reader, writer = await connect(served.port)
        status, _, _ = await answer(reader)
        assert status == 408
        writer.close()

    async def test_the_next_head_on_a_kept_alive_connection_has_its_own_deadline(
        self, served: Served
    ) -> None:
        reader, writer = await connect(served.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"ok"), 5)
        assert first.startswith(b"HTTP/1.1 200")
        await asyncio.sleep(0.6)  # idle past the head deadline: keep-alive's, not the guard's
        writer.write(PARTIAL)
        await writer.drain()
        status, _, _ = await answer(reader)
        assert status == 408
        writer.close()

    async def test_a_pipelined_head_behind_a_slow_handler_is_not_timed_out(
        self, served: Served
    ) -> None:
        """The second head arrives at once but waits 0.6 s behind the first request's
        handler, past the 0.4 s deadline: the delay is the server's, so both are answered."""
        two = (
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        reader, writer = await connect(served.port, two)
        raw = await asyncio.wait_for(reader.read(), 5)
        assert raw.count(b"HTTP/1.1 200 OK") == 2
        assert b"408" not in raw
        writer.close()


class TestIncompleteCap:
    async def test_one_more_closes_the_head_that_waited_longest(self, served: Served) -> None:
        first = await connect(served.port, PARTIAL)
        await asyncio.sleep(0.05)
        second = await connect(served.port, PARTIAL)
        third = await connect(served.port, PARTIAL)
        await asyncio.sleep(0.15)  # all three have stalled now
        assert served.guard.incomplete == 3
        fourth = await connect(served.port, PARTIAL)
        status, fields, body = await answer(first[0])
        assert (status, fields["retry-after"]) == (503, "1")
        assert json.loads(body)["error"] == "too_many_incomplete_requests"
        assert served.guard.counts.evicted == 1
        # The others were left alone: each can still finish its request.
        for reader, writer in (second, third, fourth):
            writer.write(b"x\r\nConnection: close\r\n\r\n")
            await writer.drain()
            status, _, body = await answer(reader)
            assert (status, body) == (200, b"ok")
            writer.close()
        first[1].close()

    async def test_complete_requests_websockets_and_idle_connections_never_count(
        self, served: Served
    ) -> None:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{served.port}/ws")
            async with session.get(f"http://127.0.0.1:{served.port}/") as response:
                assert await response.text() == "ok"  # its connection stays kept alive
            stalled = [await connect(served.port, PARTIAL) for _ in range(3)]
            await asyncio.sleep(0.2)
            assert served.guard.incomplete == 3
            newcomer = await connect(served.port, PARTIAL)
            status, _, _ = await answer(stalled[0][0])
            assert status == 503
            # The WebSocket and the kept-alive connection were not touched.
            await ws.send_str("still here")
            assert (await ws.receive_str(timeout=5)) == "still here"
            async with session.get(f"http://127.0.0.1:{served.port}/") as response:
                assert await response.text() == "ok"
            await ws.close()
            for _, writer in [*stalled, newcomer]:
                writer.close()

    async def test_trickled_bodies_give_way_to_a_newcomer(
        self, served: Served, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Second outside attack: 300 connections sent a head and trickled a body, and the
        approver refused every genuine newcomer with 503 while they lasted. A newcomer is never
        refused: bodies read for the stall time at under 16 KiB/s are closed, oldest first."""
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"
        bodies = [await connect(served.port, head) for _ in range(3)]
        await asyncio.sleep(0.2)  # past stalled_after_seconds, 10 bytes each: a trickle
        assert served.guard.incomplete == 3
        reader, writer = await connect(served.port, b"GET / HTTP/1.1\r\nHost: x\r\n")
        status, fields, _ = await answer(bodies[0][0])  # the oldest body gave way
        assert (status, fields["retry-after"]) == (503, "1")
        writer.write(b"Connection: close\r\n\r\n")
        await writer.drain()
        assert (await answer(reader))[::2] == (200, b"ok")  # the newcomer is served
        assert served.guard.counts.evicted_bodies == 1
        for body_reader, body_writer in bodies[1:]:  # the others can still finish
            body_writer.write(b"x" * 90)
            await body_writer.drain()
            assert (await body_reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
            body_writer.close()
        writer.close()

    async def test_a_body_arriving_at_network_speed_is_never_closed(self, served: Served) -> None:
        """A large body that has not stalled (300 KiB in 0.2 s) keeps its slot: the newcomers
        are let in over the cap instead."""
        size = 600 * 1024
        head = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
        big_reader, big_writer = await connect(served.port, head + b"y" * (size // 2))
        await asyncio.sleep(0.2)
        newcomers = [await connect(served.port, PARTIAL) for _ in range(3)]
        assert served.guard.incomplete == 4
        assert served.guard.counts.evicted_bodies == 0
        big_writer.write(b"y" * (size - size // 2))
        await big_writer.drain()
        assert (await big_reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        big_writer.close()
        for reader, writer in newcomers:
            writer.write(b"x\r\nConnection: close\r\n\r\n")
            await writer.drain()
            assert (await answer(reader))[::2] == (200, b"ok")
            writer.close()

    async def test_a_burst_is_let_in_over_the_cap_and_every_request_answered(
        self, served: Served
    ) -> None:
        """The outside attack's finding: 400 real agents at once got 503 for 144 of them (which
        StreamSpace's agent does not survive). Heads that have not stalled are never closed:
        ten fresh connections against a cap of three all get their answer."""
        burst = [await connect(served.port, PARTIAL) for _ in range(10)]
        assert served.guard.incomplete == 10  # over the cap, nobody closed
        for reader, writer in burst:
            writer.write(b"x\r\nConnection: close\r\n\r\n")
            await writer.drain()
            status, _, body = await answer(reader)
            assert (status, body) == (200, b"ok")
            writer.close()
        assert (served.guard.counts.evicted, served.guard.counts.evicted_bodies) == (0, 0)

    async def test_once_a_burst_stalls_it_is_cut_back_to_the_cap(self, served: Served) -> None:
        stalled = [await connect(served.port, PARTIAL) for _ in range(6)]
        await asyncio.sleep(0.2)
        newcomer = await connect(served.port, PARTIAL)
        for reader, _ in stalled[:4]:  # 6 + 1 over a cap of 3: the four oldest go
            status, fields, _ = await answer(reader)
            assert (status, fields["retry-after"]) == (503, "1")
        assert served.guard.counts.evicted == 4
        assert served.guard.incomplete == 3
        for _, writer in [*stalled, newcomer]:
            writer.close()

    async def test_a_whole_request_leaves_nothing_counted(self, served: Served) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{served.port}/", data=b"x" * 50_000) as response,
        ):
            assert response.status == 200
        assert served.guard.incomplete == 0


class TestUnparseable:
    @pytest.mark.parametrize(
        "head",
        [
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Agent-API-Key: " + SECRET.encode() * 300 + b"\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + SECRET.encode() * 300
            + b"\r\n\r\n",
            b"GET /" + SECRET.encode() * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: v\r\n" % i for i in range(200))
            + b"\r\n",
        ],
        ids=[
            "header value over 8 KiB",
            "bearer over 8 KiB",
            "request line over 8 KiB",
            "too many fields",
        ],
    )
    async def test_431_as_json_without_a_byte_of_the_request(
        self, served: Served, head: bytes, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.DEBUG):
            reader, writer = await connect(served.port, head)
            status, fields, body = await answer(reader)
            writer.close()
        assert status == 431
        assert fields["content-type"].startswith("application/json")
        assert json.loads(body)["error"] == "request_header_fields_too_large"
        assert SECRET[:8].encode() not in body
        assert SECRET[:8] not in caplog.text
        assert all(r.exc_info is None for r in caplog.records)

    async def test_other_malformed_heads_get_400_naming_only_the_class(
        self, served: Served, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.DEBUG):
            reader, writer = await connect(
                served.port,
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Key : " + SECRET.encode() + b"\r\n\r\n",
            )
            status, _, body = await answer(reader)
            writer.close()
        assert status == 400
        assert json.loads(body) == {
            "error": "malformed_http_request",
            "message": "the request is not valid HTTP/1.1 (BadHttpMessage)",
        }
        assert SECRET[:8] not in caplog.text
        assert served.guard.counts.malformed == 1


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="head_timeout_seconds"):
        GuardLimits(head_timeout_seconds=0)
    with pytest.raises(ValueError, match="max_incomplete"):
        GuardLimits(max_incomplete=0)
    with pytest.raises(ValueError, match="stalled_after_seconds"):
        GuardLimits(stalled_after_seconds=-1)
