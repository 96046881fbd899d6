"""The stdio fast path: a plain ``tools/call`` goes from the line that carries it straight to
a worker thread.

Through the SDK, a call passes the session's receive loop (a second validation of the
message), a memory stream, a new task, FastMCP's tool manager and ``run_in_executor``
before its worker starts: ~0.6-1 ms on a host that sleeps between calls, a tenth of a warm
exec. Here the stdio reader (stdio.py ``Messages``) hands a call over when it is a request
the SDK would run the same way:

- the session is initialized (``notifications/initialized`` went by),
- its params pass the SDK's own model (``CallToolRequestParams``: else the session's -32602),
- the tool is one of ours (``DIRECT_ATTR``) and its arguments pass the tool's own argument
  model (FastMCP's, with our checks), after FastMCP's own pre-parsing,
- the client gave no progress token (progress notifications go through the session).

Anything else (and anything that fails those checks) goes to the session as before, which
answers it the SDK's way, so an invalid call gets the same one-line error either way. A
direct call's worker writes its answer (stdio.py ``Replies``); an exception becomes the
error result FastMCP would have made of it; a ``notifications/cancelled`` for it cancels
the call (an exec: the guest command's process group is killed; one still queued never
starts) and answers "Request cancelled", as the SDK answers a cancelled request. At the end
of stdin every running call is cancelled, as the SDK cancels the requests it still runs.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp.server.fastmcp import FastMCP
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    CancelledNotificationParams,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    TextContent,
)

from .. import calls
from .progress import WORKERS, in_call

if TYPE_CHECKING:
    from .stdio import Replies

# The attribute of a tool function that starts its call without the SDK: given the
# validated arguments and what sends the answer, the work a worker thread runs
# (server.py ``_make_tool``).
DIRECT_ATTR = "pyro_direct"
Work = Callable[[], object]
Starter = Callable[[dict[str, Any], Callable[[CallToolResult], None]], Work]


class Request:
    """One direct call's request , and who answered it: ``None`` (nobody yet),
    ``"worker"`` or ``"cancel"``. Its own object, so an answer the session sends under the
    same id (a later request reusing it: MCP forbids that, plain JSON-RPC clients do it)
    never counts as this one's."""

    __slots__ = ("by", "id")

    def __init__(self, request_id: Any) -> None:
        self.id = request_id
        self.by: str | None = None


def error_result(tool_name: str, error: Exception) -> CallToolResult:
    """What FastMCP answers for a tool that raised (``Tool.run`` and the low-level handler)."""
    text = f"Error executing tool {tool_name}: {error}"
    return CallToolResult(content=[TextContent(type="text", text=text)], isError=True)


class DirectCalls:
    def __init__(self, server: FastMCP, replies: Replies) -> None:
        self.server = server
        self.replies = replies
        self.initialized = False
        self.lock = threading.Lock()
        self.running: dict[Any, tuple[Request, calls.Call]] = {}  # by request id

    def take(self, message: JSONRPCMessage) -> bool:
        """Start ``message`` as a direct call, or tell the reader to pass it on (False).
        Also sees what passes by: the session's initialization, and cancels."""
        root = message.root
        if isinstance(root, JSONRPCNotification):
            self._notice(root)
            return False
        if not (self.initialized and isinstance(root, JSONRPCRequest)):
            return False
        if root.method != "tools/call" or not isinstance(root.params, dict):
            return False
        started = self._prepare(root.params)
        if started is None:
            return False
        name, starter, kwargs = started
        request = Request(root.id)
        call = calls.Call()
        with self.lock:
            self.running[root.id] = (request, call)
        work = starter(kwargs, functools.partial(self.replies.answer, request))
        context = contextvars.copy_context()
        WORKERS.submit(context.run, self._run, name, request, call, work)
        return True

    def _prepare(self, params: dict[str, Any]) -> tuple[str, Starter, dict[str, Any]] | None:
        """The tool's name, starter and validated arguments; None where the SDK must run it."""
        try:  # the request as the session validates it (else its -32602 error)
            request = CallToolRequestParams.model_validate(params)
        except ValueError:
            return None
        if request.meta is not None and request.meta.progressToken is not None:
            return None
        name, arguments = request.name, request.arguments or {}
        tool = self.server._tool_manager.get_tool(name)
        starter = getattr(tool.fn, DIRECT_ATTR, None) if tool is not None else None
        if tool is None or starter is None or tool.context_kwarg is not None:
            return None
        metadata = tool.fn_metadata
        try:
            parsed = metadata.arg_model.model_validate(metadata.pre_parse_json(arguments))
        except Exception:  # the SDK answers it with its (our one-line) error
            return None
        return tool.name, starter, parsed.model_dump_one_level()

    def _run(self, name: str, request: Request, call: calls.Call, work: Work) -> None:
        try:
            if request.by is not None:  # cancelled (and answered) while queued: never starts,
                return  # as the SDK's queued future is cancelled with its task
            in_call(call, work)  # the work answers itself (its starter's send)
        except Exception as error:
            self.replies.answer(request, error_result(name, error))
        finally:
            with self.lock:
                if self.running.get(request.id, (None,))[0] is request:
                    del self.running[request.id]

    def _notice(self, root: JSONRPCNotification) -> None:
        if root.method == "notifications/initialized":
            self.initialized = True
        elif root.method == "notifications/cancelled":
            try:  # as the session validates it (it ignores one that does not pass)
                params = CancelledNotificationParams.model_validate(root.params)
            except ValueError:
                return
            if params.requestId is not None:
                self._cancel(params.requestId)

    def close(self) -> None:
        """The end of stdin: every running call is cancelled, as the SDK cancels the requests
        it still runs when its transport closes (an exec's process group is killed; one
        still queued starts cancelled), so a client that went away leaves no command
        running on. Each still writes its answer (as the SDK path's worker does)."""
        with self.lock:
            entries = list(self.running.values())
        for _request, call in entries:
            threading.Thread(target=call.cancel, daemon=True, name="pyro-cancel").start()

    def _cancel(self, request_id: Any) -> None:
        with self.lock:
            entry = self.running.get(request_id)
        if entry is None:
            return
        request, call = entry
        if self.replies.cancelled(request):  # answered first: the call's own answer is dropped
            threading.Thread(target=call.cancel, daemon=True, name="pyro-cancel").start()
