"""The stdio transport without a thread hop per line.

The MCP SDK's stdio server reads and writes through ``anyio.wrap_file``: every line read,
every line written and every flush is a trip to a worker thread (three or four per call,
each one a wake-up on a busy host). Here stdin is read by the event loop itself and a
reply is written straight to the stdout pipe. Anything that is not a pipe or socket (a
file, a terminal) falls back to the SDK's own transport.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import IO, Any, cast

import anyio
from mcp.server.fastmcp import FastMCP
from mcp.server.stdio import stdio_server

LINE_LIMIT = 256 * 1024 * 1024  # one JSON-RPC message per line; file contents can be large


def _is_stream(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _LineReader:
    """An async iterator of stdin's lines (text), read by the event loop."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        while line := await self.reader.readline():
            yield line.decode("utf-8", "replace")


class _LineWriter:
    """Writes a reply to the stdout pipe at once (a small write to a pipe does not block)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    async def write(self, text: str) -> None:
        self.out.write(text.encode("utf-8"))

    async def flush(self) -> None:
        self.out.flush()


async def _open_stdin() -> _LineReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return _LineReader(reader)


async def _run(server: FastMCP) -> None:
    low = server._mcp_server
    stdin: Any = await _open_stdin()
    stdout: Any = _LineWriter(sys.stdout.buffer)
    async with stdio_server(
        cast(anyio.AsyncFile[str], stdin), cast(anyio.AsyncFile[str], stdout)
    ) as (read_stream, write_stream):
        await low.run(read_stream, write_stream, low.create_initialization_options())


def _separate_streams() -> bool:
    """stdin and stdout are two pipes or sockets (reading stdin makes it non-blocking)."""
    fds = (sys.stdin.fileno(), sys.stdout.fileno())
    if not all(_is_stream(fd) for fd in fds):
        return False
    one, two = (os.fstat(fd) for fd in fds)
    return (one.st_dev, one.st_ino) != (two.st_dev, two.st_ino)


def serve_stdio(server: FastMCP) -> None:
    if _separate_streams():
        anyio.run(_run, server)
    else:
        server.run("stdio")
