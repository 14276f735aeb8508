"""A TCP proxy on loopback that plays a database's network faults for tests.

Modes (switch at any time with :attr:`TcpProxy.mode`):

* ``forward``: relay bytes both ways to the target (a working database);
* ``refuse``: close every new connection at once (a database that is down: the driver sees the
  connection reset, as with a stopped server behind a Service);
* ``freeze``: accept and hold connections, relaying nothing in either direction, existing
  connections included (a hung database or a partitioned network: the driver waits).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

Mode = Literal["forward", "refuse", "freeze"]


class TcpProxy:
    """A loopback proxy to ``target_host:target_port``; :attr:`port` once started."""

    def __init__(self, target_host: str, target_port: int, *, mode: Mode = "forward") -> None:
        self.target = (target_host, target_port)
        self._flowing = asyncio.Event()
        self._mode: Mode = "forward"
        self.mode = mode
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def mode(self) -> Mode:
        """The current mode (module docstring)."""
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        self._mode = mode
        if mode == "freeze":
            self._flowing.clear()
        else:
            self._flowing.set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def drop_connections(self) -> None:
        """Close every connection now (a restarted database)."""
        for writer in list(self._writers):
            writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(upstream_writer)
        pumps = [
            asyncio.create_task(self._pump(reader, upstream_writer)),
            asyncio.create_task(self._pump(upstream_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, upstream_writer):
                w.close()
                self._writers.discard(w)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()
