"""Adversarial review of the stdio fast path (mcp/direct.py): where a direct call must behave
as the SDK's session would. Real ``DirectCalls`` and ``Replies`` on a real server from
``create_server``; a tool that blocks is a real tool whose direct starter waits on a gate.
The guest-backed case (a client that goes away mid-exec): test_mcp_direct_guest.py."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.message import SessionMessage
from mcp.types import ErrorData, JSONRPCError, JSONRPCMessage

from pyro_mcp import calls
from pyro_mcp.mcp import progress, stdio
from pyro_mcp.mcp.direct import DIRECT_ATTR, DirectCalls
from support import INITIALIZE as INITIALIZE_REQUEST
from support import INITIALIZED
from test_mcp_direct import _call, _passed_on, make_direct
from test_mcp_stdio_review import _Client

WATCHDOG = 20.0


@pytest.fixture
def direct(tmp_path: Path) -> DirectCalls:
    """test_mcp_direct's (a fixture imported by name would shadow every argument)."""
    return make_direct(tmp_path)


def _lines(direct: DirectCalls) -> list[dict[str, Any]]:
    out = direct.replies.out
    assert isinstance(out, io.BytesIO)
    return [json.loads(line) for line in out.getvalue().decode().splitlines()]


def _wait_for(what: Callable[[], bool], within: float = WATCHDOG) -> None:
    deadline = time.monotonic() + within
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def gated(direct: DirectCalls) -> Iterator[tuple[threading.Event, list[str]]]:
    """workspace_list's direct starter made to wait for a gate (as a long exec does); what
    ran is recorded. The gate always opens at the end (a watchdog for the pool)."""
    gate = threading.Event()
    ran: list[str] = []
    tool = direct.server._tool_manager.get_tool("workspace_list")
    assert tool is not None
    real = getattr(tool.fn, DIRECT_ATTR)

    def start(kwargs: dict[str, Any], send: Callable[[Any], None]) -> Callable[[], object]:
        def work() -> object:
            ran.append("started")
            gate.wait(WATCHDOG)
            ran.append("ended")
            return real(kwargs, send)()

        return work

    setattr(tool.fn, DIRECT_ATTR, start)
    try:
        yield gate, ran
    finally:
        gate.set()
        setattr(tool.fn, DIRECT_ATTR, real)


# -- the request's params: what the SDK's session refuses, the fast path must not run ---------


@pytest.mark.parametrize(
    "call",
    [
        _call(2, "workspace_list", []),  # falsy, not an object: the SDK says -32602
        _call(2, "workspace_list", 0),
        _call(2, "workspace_list", False),
        _call(2, "workspace_list", ""),
        _call(2, "workspace_list", {}, _meta="p1"),  # _meta not an object
        _call(2, "workspace_list", {}, _meta={"progressToken": 1.5}),
        _call(2, "workspace_list", {}, _meta={"progressToken": 0}),  # falsy tokens are tokens
        _call(2, "workspace_list", {}, _meta={"progressToken": ""}),
        _call(2, "workspace_list", {}, task="soon"),  # the SDK validates task metadata
    ],
    ids=[
        "args-empty-list",
        "args-0",
        "args-false",
        "args-empty-str",
        "meta-str",
        "token-float",
        "token-0",
        "token-empty",
        "task-str",
    ],
)
def test_params_the_sdk_refuses_go_to_the_session(direct: DirectCalls, call: Any) -> None:
    """The SDK validates the whole request (CallToolRequestParams) and answers -32602
    "Invalid request parameters"; the fast path ran such a call (``arguments or {}``, a
    ``_meta`` that is not an object ignored) and answered a result. (A token of 0 or "" is
    a token: the session runs the call with progress.)"""
    passed = _passed_on([INITIALIZED, call], direct)
    assert [getattr(m, "id", None) for m in passed] == [None, 2]
    assert _lines(direct) == []


def test_a_valid_call_with_extra_params_and_a_null_token_is_still_direct(
    direct: DirectCalls,
) -> None:
    """What the SDK accepts stays on the fast path: extra params keys, a null token, a
    ``_meta`` with other keys, ``arguments`` null."""
    calls = [
        _call(2, "workspace_list", {}, extra={"x": 1}),
        _call(3, "workspace_list", {}, _meta={"progressToken": None, "other": 1}),
        _call(4, "workspace_list", None),
        _call(5, "workspace_list", {}, _meta=None),
    ]
    passed = _passed_on([INITIALIZED, *calls], direct)
    assert len(passed) == 1  # the notification only
    _wait_for(lambda: len(_lines(direct)) == 4)
    assert sorted(line["id"] for line in _lines(direct)) == [2, 3, 4, 5]
    assert all(line["result"]["isError"] is False for line in _lines(direct))


# -- one answer per request ---------------------------------------------------------------------


def _session_error(replies: stdio.Replies, request_id: int) -> None:
    """The session answering a request with an error from its receive loop (a request it
    could not validate), as it does: not from a tool's task."""
    error = ErrorData(code=-32602, message="Invalid request parameters", data="")
    message = JSONRPCMessage(JSONRPCError(jsonrpc="2.0", id=request_id, error=error))
    asyncio.run(replies.send(SessionMessage(message)))


def test_a_session_error_for_a_reused_id_leaves_the_direct_calls_answer(
    direct: DirectCalls, gated: tuple[threading.Event, list[str]]
) -> None:
    """A plain JSON-RPC client reuses id 7 while its direct call runs (stdio.py ``Request``
    says they do), and the second request is one the session refuses: both requests are
    answered, as the SDK answers both when neither is direct. The session's error was taken
    as the direct call's answer and the call's own answer dropped."""
    gate, ran = gated
    assert direct.take(JSONRPCMessage.model_validate(INITIALIZED)) is False
    assert direct.take(JSONRPCMessage.model_validate(_call(7, "workspace_list", {}))) is True
    _wait_for(lambda: ran == ["started"])
    _session_error(direct.replies, 7)
    gate.set()
    _wait_for(lambda: direct.running == {})
    answers = [line for line in _lines(direct) if line["id"] == 7]
    assert [("error" in a, "result" in a) for a in answers] == [(True, False), (False, True)]


def test_a_cancel_of_a_call_still_queued_keeps_it_from_running(
    direct: DirectCalls, gated: tuple[threading.Event, list[str]]
) -> None:
    """Every worker busy (40 long calls): a direct call waits in the pool's queue. Cancelled
    there, it is answered "Request cancelled" and must never start (the SDK path's
    ``run_in_executor`` future is cancelled with its task and never runs): here a create or
    a vm_run would still run, its sandbox unknown to the client."""
    gate, ran = gated
    busy = threading.Event()
    blockers = [progress.WORKERS.submit(busy.wait, WATCHDOG) for _ in range(40)]
    try:
        direct.take(JSONRPCMessage.model_validate(INITIALIZED))
        assert direct.take(JSONRPCMessage.model_validate(_call(8, "workspace_list", {})))
        cancel = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": 8},
        }
        direct.take(JSONRPCMessage.model_validate(cancel))
        assert _lines(direct) == [
            {"jsonrpc": "2.0", "id": 8, "error": {"code": 0, "message": "Request cancelled"}}
        ]
    finally:
        busy.set()
        for blocker in blockers:
            blocker.result(WATCHDOG)
    gate.set()
    _wait_for(lambda: direct.running == {})
    assert ran == [], "the cancelled call ran"
    assert len(_lines(direct)) == 1


def test_the_end_of_stdin_cancels_running_direct_calls(
    direct: DirectCalls, gated: tuple[threading.Event, list[str]]
) -> None:
    """At the end of stdin the SDK cancels every request it still runs (Server.run cancels
    its handlers; an exec's process group is killed); direct calls were left running, so a
    client that went away kept ``pyro mcp serve`` alive until its command ended."""
    gate, ran = gated
    cancelled: list[bool] = []
    tool = direct.server._tool_manager.get_tool("workspace_list")
    assert tool is not None
    gated_start = getattr(tool.fn, DIRECT_ATTR)

    def start(kwargs: dict[str, Any], send: Callable[[Any], None]) -> Callable[[], object]:
        work = gated_start(kwargs, send)

        def hooked() -> object:
            call = calls.current()
            assert call is not None
            with calls.on_cancel(gate.set):  # as an exec's cancel kills its command
                result = work()
            cancelled.append(call.cancelled.is_set())
            return result

        return hooked

    setattr(tool.fn, DIRECT_ATTR, start)
    passed = _passed_on([INITIALIZED, _call(3, "workspace_list", {})], direct)  # then EOF
    assert len(passed) == 1, passed  # the notification: the call went direct
    _wait_for(lambda: direct.running == {}, within=5.0)  # not the gate's 20 s
    assert ran == [] or cancelled == [True], (ran, cancelled)


# -- a real server over pipes --------------------------------------------------------------------


def _cancel(request_id: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": request_id},
    }


def test_cancels_racing_answers_and_odd_ids_get_exactly_one_answer_each() -> None:
    """On ``pyro mcp serve``: 300 direct calls each followed at once by its cancel (the cancel
    races the worker's answer), cancels of unknown and finished ids, string, huge and zero
    ids: every request is answered exactly once (a result or "Request cancelled"), under
    the id it was sent with, and the server ends cleanly."""
    client = _Client()
    with client.watched(120):
        client.send(INITIALIZE_REQUEST, INITIALIZED, _cancel(999), _cancel("nope"))
        client.wait(1)
        ids: list[Any] = [0, "a-1", 2**70, -5, *range(1000, 1300)]
        for number, request_id in enumerate(ids):
            client.send(_call(request_id, "workspace_list", {}))
            time.sleep(number % 8 * 0.0005)  # before, about at and after the answer
            client.send(_cancel(request_id))
        client.wait(*ids)
        client.send(_cancel(1000), _cancel(0), {"jsonrpc": "2.0", "id": "end", "method": "ping"})
        client.wait("end")
        for request_id in ids:
            [answer] = client.answers(request_id)
            assert answer["id"] == request_id and type(answer["id"]) is type(request_id)
            if "error" in answer:
                assert answer["error"] == {"code": 0, "message": "Request cancelled"}
            else:
                assert answer["result"]["isError"] is False
        client.ends_cleanly()
        assert len([line for line in client.lines if "id" in line]) == len(ids) + 2


NO_ENV = "nope:1"  # every call below fails or answers before any sandbox would start
NO_WS = "0123456789ab"
SAME_EITHER_WAY: list[tuple[str, dict[str, Any]]] = [
    ("workspace_list", {}),
    ("workspace_list", {"limit": "5", "offset": None}),  # pre_parse_json; null for a default
    ("workspace_list", {"limit": "abc"}),
    ("workspace_list", {"limit": -1, "bogus": 1}),
    ("workspace_status", {"workspace_id": NO_WS}),
    ("workspace_status", {"workspace_id": 7}),
    ("workspace_status", {}),
    ("workspace_create", {"environment": NO_ENV, "allow_host_compat": True}),
    ("workspace_create", {"environment": NO_ENV, "network_policy": "egress"}),  # over the ceiling
    ("workspace_create", {"environment": NO_ENV, "seed_path": "/etc"}),  # outside the host root
    ("workspace_create", {"environment": NO_ENV, "labels": '{"a": "b"}'}),  # JSON in a string
    ("workspace_create", {"environment": NO_ENV, "secrets": [{"name": "TOKEN", "value": "v"}]}),
    ("workspace_create", {"environment": NO_ENV, "secrets": ["UNDECLARED"]}),
    ("workspace_create", {"environment": NO_ENV, "secrets": '["TOKEN"]'}),
    ("vm_run", {"environment": NO_ENV, "command": "true", "network": True}),
    ("vm_create", {"environment": NO_ENV, "network": True}),
    ("workspace_exec", {"workspace_id": NO_WS, "command": "true", "secret_env": {"X": "NOPE"}}),
    ("workspace_exec", {"workspace_id": NO_WS, "command": "true", "cwd": "/etc"}),
    ("workspace_sync_push", {"workspace_id": NO_WS, "source_path": "/etc"}),
    ("workspace_export", {"workspace_id": NO_WS, "path": "x", "output_path": "/etc/x"}),
    ("workspace_secret_set", {"workspace_id": NO_WS, "name": "TOKEN"}),
]


def test_a_direct_call_answers_what_the_sdk_answers(tmp_path: Path) -> None:
    """Each call twice on ``pyro mcp serve`` (workspace-full, a declared secret, the default
    network ceiling and host root): without a progress token (the fast path, where it takes
    it) and with one (the SDK's session): the same answer, operator refusals included."""
    code = "from pyro_mcp.cli import main; main()"
    argv = ["mcp", "serve", "--profile", "workspace-full", "--secret", "TOKEN"]
    argv += ["--secret-plain", "TOKEN", "--host-root", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TOKEN": "s3cret"},
        cwd=tmp_path,
    )
    client = _Client(proc)
    with client.watched(120):
        client.send(INITIALIZE_REQUEST, INITIALIZED)
        client.wait(1)
        for number, (name, arguments) in enumerate(SAME_EITHER_WAY):
            client.send(
                _call(10 + 2 * number, name, arguments),
                _call(11 + 2 * number, name, arguments, _meta={"progressToken": number}),
            )
        every = [10 + n for n in range(2 * len(SAME_EITHER_WAY))]
        client.wait(*every)
        for number, call in enumerate(SAME_EITHER_WAY):
            [direct], [session] = client.answers(10 + 2 * number), client.answers(11 + 2 * number)
            direct.pop("id"), session.pop("id")
            assert direct == session, call
            assert "s3cret" not in json.dumps(direct)
        client.ends_cleanly()


@pytest.mark.parametrize(
    "params",
    [{"requestId": 8, "reason": 5}, {"requestId": True}, {"requestId": 8.0}, None],
    ids=["reason-not-a-string", "id-true", "id-float", "no-params"],
)
def test_a_cancel_the_session_would_ignore_cancels_nothing(
    direct: DirectCalls, gated: tuple[threading.Event, list[str]], params: Any
) -> None:
    """The session validates a ``notifications/cancelled`` and ignores one that does not
    pass (a reason that is not a string); the fast path cancelled the call anyway."""
    gate, ran = gated
    direct.take(JSONRPCMessage.model_validate(INITIALIZED))
    assert direct.take(JSONRPCMessage.model_validate(_call(8, "workspace_list", {})))
    _wait_for(lambda: ran == ["started"])
    cancel: dict[str, Any] = {"jsonrpc": "2.0", "method": "notifications/cancelled"}
    if params is not None:
        cancel["params"] = params
    assert direct.take(JSONRPCMessage.model_validate(cancel)) is False
    gate.set()
    _wait_for(lambda: direct.running == {})
    [answer] = _lines(direct)
    assert answer["result"]["isError"] is False, answer
