"""``pyro mcp serve`` over stdio: the event-loop reader on pipes, the SDK's transport for
anything else (a file as stdin), and the compact text block of every tool result."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from mcp.server.fastmcp import FastMCP

from pyro_mcp.mcp import stdio
from pyro_mcp.mcp.reply import OutputCheck, OutputMismatch, tool_result
from support import INITIALIZE, pyro_argv

MESSAGES = [
    INITIALIZE,
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "workspace_list"}},
]


def _answers(stdout: str) -> dict[int, Any]:
    return {msg["id"]: msg for msg in map(json.loads, stdout.splitlines()) if "id" in msg}


def _once(answers: dict[int, Any], line: str) -> None:
    """Add a line's answer; a request answered twice fails (worker and session both)."""
    for key, msg in _answers(line).items():
        assert key not in answers, f"request {key} answered twice: {answers[key]} and {msg}"
        answers[key] = msg


def _check(answers: dict[int, Any]) -> None:
    assert answers[1]["result"]["serverInfo"]["name"] == "pyro_mcp"
    assert "error" not in answers[2], answers[2]
    result = answers[2]["result"]
    assert result["isError"] is False
    assert isinstance(result["structuredContent"]["workspaces"], list)
    [block] = result["content"]
    assert json.loads(block["text"]) == result["structuredContent"]
    assert "\n" not in block["text"]


def _converse(*rounds: tuple[list[Any], set[int]]) -> dict[int, Any]:
    """Send each round's messages through pipes once the round before is answered, and keep
    stdin open until every ``wanted`` id is (at EOF the server drops calls in flight); a
    watchdog ends a stuck server. A request answered twice fails."""
    proc = subprocess.Popen(
        [*pyro_argv(), "mcp", "serve", "--profile", "workspace-core"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    answers: dict[int, Any] = {}
    try:
        assert proc.stdin is not None and proc.stdout is not None
        for messages, wanted in rounds:
            lines = (m if isinstance(m, str) else json.dumps(m) for m in messages)
            proc.stdin.write("".join(line + "\n" for line in lines))
            proc.stdin.flush()
            for line in proc.stdout:
                _once(answers, line)
                if wanted <= set(answers):
                    break
        proc.stdin.close()
        for line in proc.stdout:  # anything written after the last answer we waited for
            _once(answers, line)
        assert proc.wait(timeout=60) == 0
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
    return answers


def test_pipes_are_served_by_the_event_loop_reader() -> None:
    """Large lines too: one message of 1 MiB (beyond asyncio's default 64 KiB line limit);
    a line that is not a message is skipped, as by the SDK's transport."""
    big = {"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"_meta": {"x": "y" * 2**20}}}
    after = {"jsonrpc": "2.0", "id": 4, "method": "ping"}
    # The tool's answer comes from its worker thread; the ping after it gives the session's
    # own copy of that answer time to be written, were it not dropped.
    answers = _converse((MESSAGES, {1, 2}), ([big, "not json", after], {3, 4}))
    _check(answers)
    assert answers[3]["result"] == answers[4]["result"] == {}


def test_a_file_as_stdin_falls_back_to_the_sdk_transport(tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps(INITIALIZE) + "\n")
    with requests.open() as stdin:
        proc = subprocess.run(
            [*pyro_argv(), "mcp", "serve", "--profile", "workspace-core"],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    assert _answers(proc.stdout)[1]["result"]["serverInfo"]["name"] == "pyro_mcp"


def test_tool_result_text_is_compact_json_of_the_result() -> None:
    result = {"stdout": "grüße\n", "exit_code": 0, "items": [1, {"a": None}]}
    answer = tool_result(result)
    assert answer.structuredContent == result
    [block] = answer.content
    assert block.type == "text"
    assert block.text == '{"stdout":"grüße\\n","exit_code":0,"items":[1,{"a":null}]}'


def test_the_event_loop_reader_is_chosen_for_two_pipes_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_fd, _unused = os.pipe()
    _other, write_fd = os.pipe()
    one, two = socket.socketpair()
    regular = (tmp_path / "f").open("w+")
    try:
        cases = [
            (os.fdopen(read_fd, closefd=False), os.fdopen(write_fd, "w", closefd=False), True),
            (regular, os.fdopen(write_fd, "w", closefd=False), False),
            (one.makefile("r"), one.makefile("w"), False),  # one socket both ways
            (one.makefile("r"), two.makefile("w"), True),
        ]
        for stdin, stdout, expected in cases:
            monkeypatch.setattr(sys, "stdin", stdin)
            monkeypatch.setattr(sys, "stdout", stdout)
            assert stdio._separate_streams() is expected, (stdin, stdout)
    finally:
        monkeypatch.undo()
        regular.close()
        one.close()
        two.close()
        for fd in (read_fd, _unused, _other, write_fd):
            os.close(fd)


def test_results_are_checked_against_the_declared_output_schema() -> None:
    """Once per tool the schema is compiled; a result that does not match is a one-line
    error (the SDK's own per-call check is skipped because the reply is built whole)."""
    server = FastMCP("t")

    def answer() -> dict[str, Any]:
        return {}

    server.add_tool(answer, name="answer", structured_output=True)
    tool = server._tool_manager.get_tool("answer")
    assert tool is not None
    tool.fn_metadata.output_schema = {
        "type": "object",
        "properties": {"exit_code": {"type": "integer"}},
        "required": ["exit_code"],
    }
    check = OutputCheck(server, "answer")
    assert tool_result({"exit_code": 0}, check).structuredContent == {"exit_code": 0}
    with pytest.raises(
        OutputMismatch, match=r"^Output validation error: data must contain \['exit_code'\]"
    ):
        tool_result({"stdout": ""}, check)
    with pytest.raises(OutputMismatch, match=r"data\.exit_code must be integer"):
        check({"exit_code": "0"})
