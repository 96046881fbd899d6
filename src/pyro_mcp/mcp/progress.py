"""A tool call's progress notifications and cancellation (MCP ``progressToken`` and
``notifications/cancelled``).

The tool runs in a worker thread with a ``calls.Call`` set (calls.py); operations report
their latest output line or build phase to it. Here, when the client gave a progress
token, a task sends the latest report every second it changes and at least every
``HEARTBEAT_SECONDS`` (an unchanged message then), with the seconds elapsed as the progress.
When the client cancels the request, the SDK cancels the awaiting task: the call is
cancelled (which, for an exec, has the agent kill the command's process group) in a thread
of its own, and the worker finishes on its own (the exec is still recorded, cancelled).

The worker threads are a pool of this module's (``run_in_executor``): anyio's
``to_thread.run_sync`` first yields to the event loop once and takes a capacity token,
~0.1 ms more per call on a host that sleeps between calls; the pool has the same 40 threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
from mcp.server.fastmcp import Context

from .. import calls

T = TypeVar("T")
TICK_SECONDS = 1.0
HEARTBEAT_SECONDS = 4.0  # under the 5 s a client may count on
WORKERS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="pyro-tool")


def wants_progress(ctx: Context[Any, Any, Any]) -> bool:
    """Whether the client asked for progress notifications (a ``progressToken``)."""
    try:
        meta = ctx.request_context.meta
    except ValueError:  # not inside a request (a direct call in tests)
        return False
    return meta is not None and meta.progressToken is not None


async def _report(call: calls.Call, ctx: Context[Any, Any, Any]) -> None:
    started = time.monotonic()
    seen, sent_at = 0, started
    while True:
        await anyio.sleep(TICK_SECONDS)
        version, message = call.latest()
        now = time.monotonic()
        if version == seen and now - sent_at < HEARTBEAT_SECONDS:
            continue
        elapsed = round(now - started, 1)
        try:
            await ctx.report_progress(elapsed, message=message or f"running ({elapsed:g}s)")
        except Exception:  # the client went away: its answer will not reach it either
            return
        seen, sent_at = version, now


def in_call(call: calls.Call, work: Callable[[], T]) -> T:
    token = calls.CURRENT.set(call)
    try:
        return work()
    finally:
        calls.CURRENT.reset(token)


async def _run(call: calls.Call, work: Callable[[], T]) -> T:
    """``work`` in a worker thread (in a copy of this context, as anyio's threads run); a
    cancelled caller stops waiting for it at once."""
    context = contextvars.copy_context()
    future = asyncio.get_running_loop().run_in_executor(WORKERS, context.run, in_call, call, work)
    try:
        return await future
    except anyio.get_cancelled_exc_class():
        threading.Thread(target=call.cancel, daemon=True, name="pyro-cancel").start()
        raise


async def run_tool(work: Callable[[], T], ctx: Context[Any, Any, Any]) -> T:
    """Run ``work`` in a worker thread as a call that reports progress and can be
    cancelled. Its error is raised as it is (never inside an exception group)."""
    call = calls.Call()
    if not wants_progress(ctx):
        return await _run(call, work)
    outcome: list[T] = []
    error: list[Exception] = []
    async with anyio.create_task_group() as group:
        group.start_soon(_report, call, ctx)
        try:
            outcome.append(await _run(call, work))
        except Exception as exc:  # raised below, outside the task group
            error.append(exc)
        group.cancel_scope.cancel()
    if error:
        raise error[0]
    return outcome[0]
