"""Drive the real MCP server like the SDK: ``McpPyro`` has the SDK's method names, and each
call becomes a ``tools/call`` over stdio to ``pyro mcp serve`` with the official client.

The mapping (method → tool, argument names) is read from the same operation declarations
the server is built from, so the smoke stories run unchanged through MCP.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from pyro_mcp.api import operations
from support import pyro_argv

T = TypeVar("T")


class McpToolError(RuntimeError):
    """The tool answered isError=true (the server's clear message is the text)."""


class McpPyro:
    def __init__(
        self,
        profile: str,
        env: dict[str, str],
        roots: tuple[str, ...] = (),
        extra: tuple[str, ...] = (),
    ) -> None:
        """``roots``: the operator's ``--host-root`` directories; ``extra``: more operator
        flags of ``pyro mcp serve``."""
        self.profile = profile
        self.roots = roots
        self.extra = extra
        self.env = env
        self.ops = {op.name: op for op in operations() if op.mcp_name}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        # anyio wants the client opened and closed in one task: that task serves requests.
        self.requests: asyncio.Queue[Any] = self._run(self._make_queue())
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.main = asyncio.run_coroutine_threadsafe(self._main(), self.loop)
        self.ready.result(timeout=120)

    async def _make_queue(self) -> asyncio.Queue[Any]:
        return asyncio.Queue()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=600)

    async def _main(self) -> None:
        argv = pyro_argv()
        params = StdioServerParameters(
            command=argv[0],
            args=[
                *argv[1:],
                *("mcp", "serve", "--profile", self.profile),
                *[arg for root in self.roots for arg in ("--host-root", root)],
                *self.extra,
            ],
            env={**os.environ, **self.env},
        )
        try:
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                self.ready.set_result(None)
                while True:
                    item = await self.requests.get()
                    if item is None:
                        return
                    make, future = item
                    try:
                        future.set_result(await make(session))
                    except Exception as exc:
                        future.set_exception(exc)
        except Exception as exc:
            if not self.ready.done():
                self.ready.set_exception(exc)
            raise

    def _call(self, make: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(self.requests.put_nowait, (make, future))
        return future.result(timeout=600)

    def tool_names(self) -> list[str]:
        return sorted(t.name for t in self._call(lambda s: s.list_tools()).tools)

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = self._call(lambda s: s.call_tool(name, arguments))
        if result.isError:
            raise McpToolError(" ".join(getattr(c, "text", "") for c in result.content))
        assert result.structuredContent is not None, f"{name} gave no structured content"
        return dict(result.structuredContent)

    def __getattr__(self, method: str) -> Any:
        op = self.ops.get(method)
        if op is None:
            raise AttributeError(method)
        names = [p.name for p in op.params]
        renames = {p.name: p.meta.mcp_name for p in op.params if p.meta.mcp_name}

        def call(*args: Any, **kwargs: Any) -> Any:
            arguments = dict(zip(names, args, strict=False))
            arguments.update(kwargs)
            readiness = arguments.pop("readiness", None)
            if readiness:  # the SDK's dict becomes the tool's flat ready_* argument
                key = {"file": "path", "tcp": "address", "http": "url", "command": "command"}
                arguments[f"ready_{readiness['type']}"] = readiness[key[readiness["type"]]]
            arguments = {renames.get(k, k): v for k, v in arguments.items() if v is not None}
            result = self.call_tool(op.mcp_name, arguments)
            if method == "list_environments":
                return result["items"]
            return result

        return call

    def close(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.requests.put_nowait, None)
            self.main.result(timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)

    def __enter__(self) -> McpPyro:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
