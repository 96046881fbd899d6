"""The stdio transport without a hop per message.

The MCP SDK's stdio server reads and writes through ``anyio.wrap_file`` (every line read,
every line written and every flush a trip to a worker thread) and hands each message
between its reader task, the session and its writer task through memory streams: on a
host that sleeps between calls, each hop is a cold wake-up. Here, on pipes, the session
reads stdin itself (the event loop's reader; a line is parsed in the session's task), a
plain tool call is started by that reader itself (direct.py), and a reply is written
straight to the stdout pipe by the task that sends it, or by the worker thread that built a
direct call's answer (``Replies``). Anything that is not a pipe or socket (a file, a
terminal) falls back to the SDK's own transport.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import stat
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any, cast

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.fastmcp import FastMCP
from mcp.shared.message import SessionMessage
from mcp.types import (
    INVALID_REQUEST,
    CallToolResult,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
)

from .direct import DirectCalls, Request

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
    """The session's read stream: stdin's messages, one a line. A line that is not a
    JSON-RPC message never reaches the session (its reader answered nothing and logged
    pages): each request id it names is answered with -32600 (``refuse``), and stderr gets
    one line."""

    def __init__(
        self, reader: asyncio.StreamReader, replies: Replies, direct: DirectCalls | None = None
    ) -> None:
        self.reader = reader
        self.replies = replies
        self.direct = direct  # takes plain tool calls past the session (direct.py)

    def __aiter__(self) -> Messages:
        return self

    async def __anext__(self) -> SessionMessage:
        while line := await self._line():
            text = line.decode("utf-8", "replace")
            try:
                message = JSONRPCMessage.model_validate_json(text)
            except ValueError:
                why = refuse(text, self.replies)
                sys.stderr.write(f"[mcp] skipped a line that is not a JSON-RPC message: {why}\n")
                continue
            if self.direct is None or not self.direct.take(message):
                return SessionMessage(message)
        if self.direct is not None:
            self.direct.close()
        raise StopAsyncIteration

    async def _line(self) -> bytes:
        """The next line (empty at EOF); one over ``LINE_LIMIT`` is skipped whole, said on
        stderr in one line (asyncio's ``readline`` raised, ending the session, and kept the
        line's unread rest as the next line)."""
        while True:
            try:
                return await self.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as eof:  # a last line without its newline
                return eof.partial
            except asyncio.LimitOverrunError as over:
                await self._skip(over.consumed)
                sys.stderr.write(f"[mcp] skipped a message over the {LINE_LIMIT}-byte line limit\n")

    async def _skip(self, consumed: int) -> None:
        """Drop the rest of a line whose first ``consumed`` bytes are buffered."""
        while True:
            await self.reader.readexactly(consumed)
            try:
                await self.reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as over:
                consumed = over.consumed
            except asyncio.IncompleteReadError:
                return


class Replies(_Closing):
    """The session's write stream: each message written to the stdout pipe at once (a
    small write to a pipe does not block), from the event loop (the session's answers) or
    from a worker thread (a direct call's: ``answer``). A direct call gets exactly one
    answer: its worker's, or its cancel's when that came first (``cancelled``)."""

    def __init__(self, out: IO[bytes], on_gone: Callable[[], object] = lambda: None) -> None:
        self.out = out
        self.on_gone = on_gone  # the client closed stdout: end the session
        self.lock = threading.Lock()  # one writer at a time: the loop or a worker thread

    def _write(self, message: JSONRPCMessage) -> None:
        self._write_line(message.model_dump_json(by_alias=True, exclude_none=True))

    def _write_line(self, text: str) -> None:
        try:
            self.out.write(text.encode("utf-8") + b"\n")
            self.out.flush()
        except BrokenPipeError:
            self._gone()

    def _gone(self) -> None:
        """Nothing reaches the client any more: what is still written (and the interpreter's
        last flush) goes to /dev/null, and the session ends (its reader is closed)."""
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, self.out.fileno())
        os.close(null)
        self.out.flush()
        sys.stderr.write("[mcp] the client closed stdout: the server ends\n")
        self.on_gone()

    def write(self, message: JSONRPCMessage) -> None:
        with self.lock:
            self._write(message)

    async def send(self, message: SessionMessage) -> None:
        self.write(message.message)

    def cancelled(self, request: Request) -> bool:
        """Answer a direct call (direct.py) its client cancelled, as the SDK answers a
        cancelled request, unless it was answered already: True when this answer went out
        (the call's own answer is then dropped)."""
        error = ErrorData(code=0, message="Request cancelled")
        with self.lock:
            if request.by is not None:
                return False
            request.by = "cancel"
            self._write(JSONRPCMessage(JSONRPCError(jsonrpc="2.0", id=request.id, error=error)))
        return True

    def answer(self, request: Request, result: CallToolResult) -> None:
        """Answer a direct call from its worker thread, as the session would have (unless
        its cancel answered it first)."""
        # the line JSONRPCResponse(result=ServerResult(result)) dumps to, serialized once
        body = result.model_dump_json(by_alias=True, exclude_none=True)
        line = f'{{"jsonrpc":"2.0","id":{json.dumps(request.id)},"result":{body}}}'
        with self.lock:
            if request.by is not None:
                return
            request.by = "worker"
            self._write_line(line)


def refuse(text: str, replies: Replies) -> str:
    """Answer each request a bad line names (an id and a method) with -32600; what was
    wrong with the line, in a few words."""
    try:
        data = json.loads(text)
    except ValueError:
        return "not JSON"
    except RecursionError:
        return "nested too deeply"
    batch = isinstance(data, list)
    why = "a batch (one message a line, no batches)" if batch else 'not {"jsonrpc": "2.0", ...}'
    for item in data if batch else [data]:
        request_id = item.get("id") if isinstance(item, dict) and "method" in item else None
        if isinstance(request_id, str | int) and not isinstance(request_id, bool):
            error = ErrorData(code=INVALID_REQUEST, message=f"Invalid request: {why}")
            replies.write(JSONRPCMessage(JSONRPCError(jsonrpc="2.0", id=request_id, error=error)))
    return why


async def _open_stdin(replies: Replies, direct: DirectCalls | None = None) -> Messages:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    pipe, _protocol = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    replies.on_gone = functools.partial(loop.call_soon_threadsafe, pipe.close)  # stdin's end
    return Messages(reader, replies, direct)


async def _run(server: FastMCP) -> None:
    low = server._mcp_server
    replies = Replies(sys.stdout.buffer)
    messages = await _open_stdin(replies, DirectCalls(server, replies))
    read_stream = cast(MemoryObjectReceiveStream[SessionMessage | Exception], messages)
    write_stream = cast(MemoryObjectSendStream[SessionMessage], replies)
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
