"""The stdio fast path (mcp/direct.py): which tool calls the stdio reader starts itself, and
that they are answered as the SDK answers them. On a real server from ``create_server``
(its workspace tools need no guest here); the official client over it: test_exec_progress.py
(cancel, and the same one-line error with and without a progress token)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from mcp.types import JSONRPCMessage, JSONRPCResponse, ServerResult

from pyro_mcp import Pyro
from pyro_mcp.mcp import stdio
from pyro_mcp.mcp.direct import DirectCalls, Request
from pyro_mcp.mcp.reply import tool_result
from pyro_mcp.mcp.server import create_server
from support import INITIALIZE, INITIALIZED


def _call(request_id: int, name: str, arguments: Any = None, **params: Any) -> dict[str, Any]:
    params = {"name": name, **params}
    if arguments is not None:
        params["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def _answers(out: io.BytesIO, count: int, within: float = 30.0) -> dict[int, Any]:
    """The first ``count`` answers written, by id (a watchdog: ``within`` seconds)."""
    deadline = time.monotonic() + within
    while True:
        lines = [json.loads(line) for line in out.getvalue().decode().splitlines()]
        if len(lines) >= count:
            return {line["id"]: line for line in lines}
        assert time.monotonic() < deadline, f"only {len(lines)} answers: {lines}"
        time.sleep(0.01)


def _passed_on(messages: list[dict[str, Any]], direct: DirectCalls | None) -> list[Any]:
    """Feed ``messages`` to a stdio reader; what it passes on to the session."""
    replies = direct.replies if direct is not None else stdio.Replies(io.BytesIO())

    async def read() -> list[Any]:
        reader = asyncio.StreamReader()
        reader.feed_data(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
        reader.feed_eof()
        return [m.message.root async for m in stdio.Messages(reader, replies, direct)]

    return asyncio.run(read())


def make_direct(home: Path) -> DirectCalls:
    """The fast path of a real workspace-core server on ``home``, writing to a buffer."""
    server = create_server(Pyro(base_dir=home), profile="workspace-core")
    return DirectCalls(server, stdio.Replies(io.BytesIO()))


@pytest.fixture
def direct(tmp_path: Path) -> DirectCalls:
    return make_direct(tmp_path)


def _out(direct: DirectCalls) -> io.BytesIO:
    out = direct.replies.out
    assert isinstance(out, io.BytesIO)
    return out


def test_a_plain_tool_call_is_answered_by_its_worker_not_the_session(
    direct: DirectCalls,
) -> None:
    passed = _passed_on([INITIALIZE, INITIALIZED, _call(2, "workspace_list", {})], direct)
    assert [getattr(m, "method", None) for m in passed] == [
        "initialize",
        "notifications/initialized",
    ]
    answer = _answers(_out(direct), 1)[2]
    assert answer["jsonrpc"] == "2.0" and "error" not in answer
    result = answer["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["workspaces"] == []
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
    assert direct.running == {}


@pytest.mark.parametrize(
    "call",
    [
        _call(2, "workspace_list", {}, _meta={"progressToken": "p1"}),  # progress: the session's
        _call(2, "no_such_tool", {}),
        _call(2, "workspace_create", {"allow_host_compat": True}),  # refused: the SDK says
        _call(2, "workspace_status", {"workspace_id": 7}),  # not a string: the SDK's error
        _call(2, "workspace_list", [1, 2]),
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ],
    ids=["progress-token", "unknown-tool", "refused-argument", "bad-type", "list-args", "list"],
)
def test_other_requests_go_to_the_session(direct: DirectCalls, call: dict[str, Any]) -> None:
    passed = _passed_on([INITIALIZE, INITIALIZED, call], direct)
    assert len(passed) == 3 and passed[2].id == 2
    assert _out(direct).getvalue() == b""


def test_nothing_is_direct_before_the_session_is_initialized(direct: DirectCalls) -> None:
    passed = _passed_on([INITIALIZE, _call(2, "workspace_list", {})], direct)
    assert [getattr(m, "method", None) for m in passed] == ["initialize", "tools/call"]


def test_a_failing_call_gets_fastmcps_error_result(direct: DirectCalls) -> None:
    _passed_on(
        [INITIALIZED, _call(5, "workspace_status", {"workspace_id": "0123456789ab"})], direct
    )
    result = _answers(_out(direct), 1)[5]["result"]
    assert result["isError"] is True
    [block] = result["content"]
    assert block["text"].startswith("Error executing tool workspace_status: ")
    assert "0123456789ab" in block["text"] and "\n" not in block["text"]


def test_a_cancel_answers_once_and_drops_the_late_answer() -> None:
    """What a cancel of a running direct call writes (its cancel hook runs in a thread):
    the SDK's "Request cancelled", then nothing more for that request."""
    out = io.BytesIO()
    replies = stdio.Replies(out)
    request = Request(9)
    assert replies.cancelled(request) is True
    replies.answer(request, tool_result({"exit_code": 0}))  # the worker, late
    assert replies.cancelled(request) is False
    [line] = [json.loads(x) for x in out.getvalue().decode().splitlines()]
    assert line == {"jsonrpc": "2.0", "id": 9, "error": {"code": 0, "message": "Request cancelled"}}


def test_a_worker_answer_is_the_line_the_session_would_write() -> None:
    out = io.BytesIO()
    replies = stdio.Replies(out)
    result = tool_result({"exit_code": 0, "stdout": "grüße\n"})
    replies.answer(Request("a-1"), result)
    written = out.getvalue().decode().rstrip("\n")
    dumped = ServerResult(result).model_dump(by_alias=True, mode="json", exclude_none=True)
    session = JSONRPCMessage(JSONRPCResponse(jsonrpc="2.0", id="a-1", result=dumped))
    assert written == session.model_dump_json(by_alias=True, exclude_none=True)
