"""``pyro mcp serve`` over stdio under hostile input and racing answers (a real server
process on pipes, raw JSON-RPC): every request gets exactly one answer and a bad line costs
that line only."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support import ENVIRONMENT as ENV
from support import INITIALIZE, INITIALIZED


def _serve(line_limit: int | None = None) -> subprocess.Popen[bytes]:
    """The stdio server, with a smaller line limit when given (the real one is 256 MiB)."""
    setup = f"import pyro_mcp.mcp.stdio as s; s.LINE_LIMIT = {line_limit}; " if line_limit else ""
    code = setup + "from pyro_mcp.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, "mcp", "serve", "--profile", "workspace-core"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _exchange(proc: subprocess.Popen[bytes], lines: list[bytes], last: int) -> list[Any]:
    """Write ``lines``, read replies until request ``last`` is answered (or stdout ends),
    close stdin; a watchdog ends a stuck server."""
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    replies: list[Any] = []
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"".join(line + b"\n" for line in lines))
        proc.stdin.flush()
        for raw in proc.stdout:
            replies.append(json.loads(raw))
            if replies[-1].get("id") == last:
                break
        proc.stdin.close()
        replies.extend(json.loads(raw) for raw in proc.stdout)
        assert proc.wait(timeout=60) == 0
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
    return replies


def _ping(request_id: int, padding: int = 0) -> bytes:
    params = {"_meta": {"x": "y" * padding}} if padding else {}
    message = {"jsonrpc": "2.0", "id": request_id, "method": "ping", "params": params}
    return json.dumps(message).encode()


def test_a_line_over_the_limit_is_skipped_and_the_server_goes_on() -> None:
    """Whether the reader holds the line's end or not yet (one line far over the limit, one
    just over it), the line is dropped whole and the next message is answered; no traceback."""
    proc = _serve(line_limit=100_000)
    start = [json.dumps(INITIALIZE).encode(), json.dumps(INITIALIZED).encode()]
    lines = [*start, _ping(2, 1_000_000), _ping(3), _ping(4, 100_010), _ping(5)]
    replies = _exchange(proc, lines, last=5)
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode()
    assert [r["id"] for r in replies if "id" in r] == [1, 3, 5], replies
    assert "Traceback" not in stderr and "│" not in stderr, stderr
    assert stderr.count("[mcp] skipped a message over the 100000-byte line limit\n") == 2, stderr


def test_every_request_in_a_bad_line_gets_one_error_answer() -> None:
    """A line that is not a JSON-RPC message but names request ids (a batch, a request with
    a bad envelope) has each of them answered with -32600, once; a line that names none is
    skipped with one line on stderr; the server goes on (the SDK's reader answered none of
    them: the client waited forever, and stderr got pages of pydantic's report)."""
    bad = [
        b"[" + _ping(5) + b"," + _ping(6) + b"]",  # MCP has no batches (2025-06-18)
        b'{"jsonrpc": "2.0", "id": 9, "method": "ping", "params": "x"}',
        b'{"id": "ten", "method": "ping"}',
        b"not json",
        b"\xff\xfe{",
        b"{}",
        b"[" * 100_000,  # deeper than the parsers recurse
        b'{"jsonrpc": "2.0", "id": 11, "method": "ping", "params": {"_meta": {"x": "\xff"}}}',
    ]
    start = [json.dumps(INITIALIZE).encode(), json.dumps(INITIALIZED).encode()]
    proc = _serve()
    replies = _exchange(proc, [*start, *bad, _ping(12)], last=12)
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode()
    answers = [r for r in replies if "id" in r]
    assert [r["id"] for r in answers] == [1, 5, 6, 9, "ten", 11, 12], replies
    assert [r for r in replies if "id" not in r] == []  # no "Internal Server Error" notices
    for answer in answers[1:5]:
        assert answer["error"]["code"] == -32600, answer
        assert "\n" not in answer["error"]["message"]
    assert "batch" in answers[1]["error"]["message"]
    assert answers[5]["result"] == answers[6]["result"] == {}
    assert "Traceback" not in stderr and "│" not in stderr, stderr
    assert len(stderr.splitlines()) == 7, stderr  # one per bad line but the last one


class _Client:
    """Raw JSON-RPC over the server's pipes: requests written at any time, every line read
    by a thread (a line that is not whole JSON fails the test)."""

    def __init__(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        self.proc = proc or _serve()
        self.lines: list[Any] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self.changed:
                self.lines.append(json.loads(raw))
                self.changed.notify_all()

    def send(self, *messages: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
        self.proc.stdin.flush()

    def answers(self, request_id: Any) -> list[Any]:
        return [line for line in self.lines if line.get("id") == request_id]

    def wait(self, *ids: Any) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: all(self.answers(i) for i in ids), 120), ids

    @contextlib.contextmanager
    def watched(self, seconds: float) -> Iterator[None]:
        """The server killed after ``seconds`` (a hang fails the test), and at the end."""
        watchdog = threading.Timer(seconds, self.proc.kill)
        watchdog.start()
        try:
            yield
        finally:
            watchdog.cancel()
            self.proc.kill()
            self.proc.wait()

    def ends_cleanly(self) -> None:
        """Its stdin closed, the server ends with exit 0."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0


def _call(request_id: Any, name: str, arguments: dict[str, Any], token: str = "") -> Any:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if token:
        params["_meta"] = {"progressToken": token}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


@pytest.mark.guest
def test_racing_answers_are_each_written_once() -> None:
    """More calls than the pool has threads (they queue and each gets its own answer),
    cancels racing the worker thread's answer, a progress token's call (its notifications
    before its answer) and pings between them: every request is answered exactly once."""
    client = _Client()
    with client.watched(240):
        client.send(INITIALIZE, INITIALIZED, _call(2, "workspace_create", {"environment": ENV}))
        client.wait(1, 2)
        workspace = client.answers(2)[0]["result"]["structuredContent"]["workspace_id"]
        execs = {100 + i: f"sleep 0.3; echo {i}" for i in range(45)}
        client.send(
            *(
                _call(i, "workspace_exec", {"workspace_id": workspace, "command": c})
                for i, c in execs.items()
            )
        )
        client.send(
            _call(
                200,
                "workspace_exec",
                {"workspace_id": workspace, "command": "for i in 1 2 3; do echo $i; sleep 1; done"},
                token="t",
            )
        )
        for i in range(20):
            client.send(
                _call(
                    300 + i, "workspace_exec", {"workspace_id": workspace, "command": "sleep 0.2"}
                ),
                {"jsonrpc": "2.0", "id": 400 + i, "method": "ping"},
            )
            time.sleep(i * 0.02)  # before, about at and after the answer
            cancel = {"requestId": 300 + i, "reason": "race"}
            client.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel})
        ids = [*execs, 200, *range(300, 320), *range(400, 420)]
        client.wait(*ids)
        client.send(_call(3, "workspace_delete", {"workspace_id": workspace}))
        client.wait(3)  # the session's own copies of the answers above were dropped by now
        for i in ids:
            assert len(client.answers(i)) == 1, client.answers(i)
        for i, command in execs.items():
            result = client.answers(i)[0]["result"]["structuredContent"]
            assert result["stdout"] == f"{command.split()[-1]}\n", result
        for i in range(300, 320):  # the cancel came first, or the command's result did
            [raced] = client.answers(i)
            error = raced.get("error", {}).get("message")
            assert error == "Request cancelled" or raced["result"]["isError"] is False, raced
        [answer] = client.answers(200)
        notes = [n for n in client.lines if n.get("method") == "notifications/progress"]
        assert notes and all(client.lines.index(n) < client.lines.index(answer) for n in notes)
        client.ends_cleanly()


def test_a_request_id_used_again_gets_its_own_answer() -> None:
    """A client that sends its next request under the id of the one just answered (MCP
    forbids it; plain JSON-RPC clients do it) gets that request's answer: the worker's answer
    of the first reaches the client before the session's copy of it is dropped, and the copy
    dropped must be that copy, not the next request's answer (a ping answered with a tool's
    result in ~6 % of rounds)."""
    client = _Client()
    with client.watched(120):
        client.send(INITIALIZE, INITIALIZED)
        client.wait(1)
        for _ in range(300):
            client.send(_call(7, "workspace_list", {}))
            with client.changed:
                assert client.changed.wait_for(lambda: len(client.answers(7)) == 1, 60)
            client.send({"jsonrpc": "2.0", "id": 7, "method": "ping"})
            with client.changed:
                assert client.changed.wait_for(lambda: len(client.answers(7)) == 2, 60)
            tool, ping = client.answers(7)
            assert "structuredContent" in tool["result"] and ping["result"] == {}, (tool, ping)
            client.lines.clear()
        client.send({"jsonrpc": "2.0", "id": 8, "method": "ping"})
        client.wait(8)
        assert client.answers(7) == []  # no stale copy came late
        client.ends_cleanly()


def test_a_client_that_closes_stdout_ends_the_server_cleanly() -> None:
    """Nothing can reach a client that closed its end of stdout: the server ends by itself
    (stdin still open), exit 0 and one line on stderr (it ended with 'internal error:
    ExceptionGroup', exit 1, before and after the fast path)."""
    proc = _serve()
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == 1
        proc.stdout.close()
        lines = [INITIALIZED, _call(2, "workspace_list", {}), json.loads(_ping(3))]
        proc.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in lines))
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
        assert proc.stderr.read().decode() == "[mcp] the client closed stdout: the server ends\n"
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
