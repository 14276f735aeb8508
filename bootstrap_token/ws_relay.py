"""Relay one WebSocket to another, frame for frame, until either side closes. Shared by the
approver's agent gate (agent <-> control plane) and the agent proxy (agent <-> approver).

Text, binary, ping and pong frames are copied as they come (``autoping=False`` on both sides, so
the two ends keep their own keep-alive semantics: StreamSpace's agent renews its read deadline
only on pongs); the first close, error or end on one side closes the other with the same close
code (1001 when there was none).
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def pump(source: Socket, sink: Socket) -> None:
    """Copy frames from ``source`` to ``sink`` until ``source`` ends, then close ``sink``."""
    async for message in source:
        if message.type is WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type is WSMsgType.PING:
            await sink.ping(message.data)
        elif message.type is WSMsgType.PONG:
            await sink.pong(message.data)
        else:  # CLOSE, CLOSING, CLOSED, ERROR
            break
    code = source.close_code or WSCloseCode.GOING_AWAY
    await sink.close(code=code, message=b"")


async def relay(one: Socket, other: Socket, done: asyncio.Event) -> None:
    """Pump both ways until either side ends or ``done`` is set; cancels what is left."""
    tasks = {
        asyncio.create_task(pump(one, other)),
        asyncio.create_task(pump(other, one)),
        asyncio.create_task(done.wait()),
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
