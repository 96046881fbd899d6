"""The stdio transport without a hop per message.

The MCP SDK's stdio server reads and writes through ``anyio.wrap_file`` (every line read,
every line written and every flush a trip to a worker thread) and hands each message
between its reader task, the session and its writer task through memory streams: on a
host that sleeps between calls, each hop is a cold wake-up. Here, on pipes, the session
reads stdin itself (the event loop's reader; a line is parsed in the session's task) and a
reply is written straight to the stdout pipe by the task that sends it. Anything that is
not a pipe or socket (a file, a terminal) falls back to the SDK's own transport.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from types import TracebackType
from typing import IO, Any, cast

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.fastmcp import FastMCP
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCMessage

LINE_LIMIT = 256 * 1024 * 1024  # one JSON-RPC message per line; file contents can be large


def _is_stream(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _Closing:
    """The async context manager the session opens its streams with."""

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        return None


class Messages(_Closing):
    """The session's read stream: stdin's messages, each line parsed as the SDK's reader
    does (a line that is not a JSON-RPC message is handed on as its error)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def __aiter__(self) -> Messages:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        line = await self.reader.readline()
        if not line:
            raise StopAsyncIteration
        try:
            return SessionMessage(
                JSONRPCMessage.model_validate_json(line.decode("utf-8", "replace"))
            )
        except Exception as exc:
            return exc


class Replies(_Closing):
    """The session's write stream: each message written to the stdout pipe at once (a
    small write to a pipe does not block)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    async def send(self, message: SessionMessage) -> None:
        text = message.message.model_dump_json(by_alias=True, exclude_none=True)
        self.out.write(text.encode("utf-8") + b"\n")
        self.out.flush()


async def _open_stdin() -> Messages:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return Messages(reader)


async def _run(server: FastMCP) -> None:
    low = server._mcp_server
    read_stream = cast(MemoryObjectReceiveStream[SessionMessage | Exception], await _open_stdin())
    write_stream = cast(MemoryObjectSendStream[SessionMessage], Replies(sys.stdout.buffer))
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
