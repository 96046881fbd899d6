"""Progress and cancel (calls.py, mcp/progress.py, the agent's exec_cancel) and an exec's
env and stdin checks: pure logic, no sandbox."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from pyro_mcp import calls
from pyro_mcp.calls import Call
from pyro_mcp.mcp import progress
from pyro_mcp.workspaces.exec_input import exec_env, parse_env_args, read_stdin_file
from support import workspace_row


def test_call_reports_the_last_output_line_and_runs_cancel_hooks_once() -> None:
    call = Call()
    call.report_output(b"first\nsecond line\n\n")
    version, message = call.latest()
    assert (version, message) == (1, "second line")
    call.report_output(b"\n  \n")  # blank output keeps the last message
    assert call.latest() == (1, "second line")
    ran: list[str] = []
    with call.on_cancel(lambda: ran.append("a")):
        call.cancel()
        call.cancel()
    assert ran == ["a"]
    with call.on_cancel(lambda: ran.append("late")):  # cancelled already: runs at once
        pass
    assert ran == ["a", "late"]
    masked = Call()
    masked.report_output(b"token=s3cret\n", lambda line: line.replace("s3cret", "[REDACTED]"))
    assert masked.latest() == (1, "token=[REDACTED]")


@pytest.mark.parametrize(
    ("env", "secrets", "error"),
    [
        ({"1BAD": "x"}, None, "env var name '1BAD' must match"),
        ({"A": 1}, None, "env var 'A' must be a string"),
        ({"A": "x\0y"}, None, "must not contain NUL"),
        ({"TOKEN": "x"}, {"TOKEN": "api"}, "env var 'TOKEN' is also set from secret 'api'"),
        (["A=1"], None, "env must map variable names to values"),
        ({f"V{i}": "x" for i in range(65)}, None, "env has 65 variables; the limit is 64"),
        # 64 of 32 KiB would fail the guest's execve (E2BIG) or break a frame (non-ASCII)
        (
            {f"V{i}": "a" * 32768 for i in range(8)},
            None,
            "env is 262160 bytes in all; the limit is 262144 bytes",
        ),
    ],
)
def test_bad_env_is_one_line(env: Any, secrets: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error) as info:
        exec_env(env, secrets)
    assert "\n" not in str(info.value)


def test_cli_env_and_stdin_file_parsing(tmp_path: Path) -> None:
    assert parse_env_args(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(ValueError, match="--env expects NAME=VALUE, got 'A'"):
        parse_env_args(["A"])
    (tmp_path / "in.txt").write_text("hello\n")
    assert read_stdin_file(str(tmp_path / "in.txt")) == "hello\n"
    (tmp_path / "big").write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(ValueError, match="over the 1048576-byte limit"):
        read_stdin_file(str(tmp_path / "big"))
    with pytest.raises(ValueError, match="No such file or directory"):
        read_stdin_file(str(tmp_path / "missing"))


class _FakeContext:
    """What run_tool reads of FastMCP's Context: the request's progress token, and where
    the notifications go."""

    def __init__(self, token: str | None) -> None:
        self.request_context = SimpleNamespace(meta=SimpleNamespace(progressToken=token))
        self.sent: list[tuple[float, str | None]] = []

    async def report_progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        self.sent.append((progress, message))


def test_a_quiet_call_still_reports_and_a_build_reports_its_phases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress, "TICK_SECONDS", 0.1)
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.5)
    phases_seen: list[tuple[str, str]] = []

    def work() -> str:
        time.sleep(0.8)  # quiet: only heartbeats
        build = calls.phases(lambda phase, detail: phases_seen.append((phase, detail)))
        assert build is not None
        build("rootfs", "mmdebstrap bookworm")
        time.sleep(0.4)
        return "done"

    ctx = _FakeContext("tok")
    assert anyio.run(progress.run_tool, work, ctx) == "done"
    messages = [message for _, message in ctx.sent]
    assert messages[0] is not None and messages[0].startswith("running ("), messages
    assert "rootfs: mmdebstrap bookworm" in messages, messages
    assert phases_seen == [("rootfs", "mmdebstrap bookworm")]  # the CLI's printer still runs
    quiet = _FakeContext(None)  # no token: no notification
    assert anyio.run(progress.run_tool, lambda: "x", quiet) == "x" and quiet.sent == []

    def fails() -> None:
        raise ValueError("one clear line")

    with pytest.raises(ValueError, match=r"^one clear line$"):  # never an exception group
        anyio.run(progress.run_tool, fails, _FakeContext("tok"))


def test_the_agent_cancels_by_key_and_only_a_command_still_running() -> None:
    """The agent's exec on this host (no sandbox): ``exec_cancel`` kills the group."""
    from pyro_mcp.guest import execution

    args = {"command": "echo before; sleep 30; echo after", "cancel_key": "k1", "cwd": "/tmp"}
    timer = threading.Timer(0.5, execution.cancel, args=("k1",))
    timer.start()
    started = time.monotonic()
    reply, data = execution.run_command(args, lambda kind, chunk: None)
    assert time.monotonic() - started < 5
    assert (reply["exit_code"], reply["cancelled"], reply["timed_out"]) == (130, True, False)
    assert data.startswith(b"before\n") and b"command cancelled by the client" in data
    assert "k1" not in execution.CANCELS
    assert execution.cancel("k2") is False  # overtook its exec: that one ends at once
    early, _ = execution.run_command({**args, "cancel_key": "k2"}, lambda kind, chunk: None)
    assert early["cancelled"] is True
    done, _ = execution.run_command({"command": "true", "cwd": "/tmp"}, lambda k, c: None)
    assert "cancelled" not in done and done["exit_code"] == 0


def test_a_history_from_before_gets_the_cancelled_column(tmp_path: Path) -> None:
    from pyro_mcp.workspaces.store import SCHEMA, Store

    old_schema = SCHEMA.replace("    cancelled INTEGER NOT NULL DEFAULT 0,\n", "")
    assert old_schema != SCHEMA
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.executescript(old_schema)
        db.execute("PRAGMA user_version=4")  # main before the history column
    store = Store(tmp_path / "state.db")
    entry = {
        "command": "sleep 60",
        "cwd": "/workspace",
        "exit_code": 130,
        "duration_ms": 1500,
        "execution_mode": "guest_vsock",
        "stdout": "",
        "stderr": "command cancelled by the client\n",
    }
    store.insert_admitted(workspace_row("abc"), lambda active: None)
    store.record_command("abc", {**entry, "cancelled": True}, time.time())
    store.record_command("abc", entry, time.time())  # an older supervisor's entry
    assert [row["cancelled"] for row in store.commands("abc")] == [1, 0]
    store.close()


def test_progress_never_shows_a_secret_split_by_chunks_or_lines() -> None:
    """A secret value split across two output chunks, or one of several lines (a PEM key),
    must not reach a progress message in part."""
    from pyro_mcp.workspaces.secrets import Redactor

    secret = "sk-0123456789abcdef"
    pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----"
    redact = Redactor([secret, pem]).progress_line
    call = Call()
    call.report_output(b"token=sk-01234", redact)  # no line ended yet: nothing to show
    assert call.latest()[1] is None or "sk-01234" not in str(call.latest()[1])
    call.report_output(b"56789abcdef\n", redact, "stdout")
    call.report_output(b"token=sk-01234", redact, "stderr")  # its own stream's partial line
    call.report_output(b"56789abcdef done\n", redact, "stderr")
    assert call.latest()[1] == "token=[REDACTED] done"
    call.report_output(b"key:\n" + pem.encode()[:30], redact)
    call.report_output(pem.encode()[30:] + b"\n", redact)
    for _ in range(3):  # each line of the key as its own chunk
        for line in pem.splitlines():
            call.report_output(line.encode() + b"\n", redact)
            message = str(call.latest()[1])
            assert "MIIEvQ" not in message and "sk-01234" not in message, message
    call.report_output("é".encode()[:1], redact)  # a character split between chunks
    call.report_output("é".encode()[1:] + b" ok\n", redact)
    assert call.latest()[1] == "é ok"


def test_late_cancels_never_crowd_out_an_early_one() -> None:
    """Cancels that came after their exec ended are never claimed: past the bound the
    oldest give way, so a cancel that overtakes its exec still counts."""
    from pyro_mcp.guest import execution

    for n in range(execution.MAX_EARLY_CANCELS + 50):
        assert execution.cancel(f"late-{n}") is False
    assert len(execution.EARLY_CANCELS) == execution.MAX_EARLY_CANCELS
    assert execution.cancel("early") is False
    args = {"command": "sleep 30", "cancel_key": "early", "cwd": "/tmp"}
    started = time.monotonic()
    reply, _ = execution.run_command(args, lambda kind, chunk: None)
    assert reply["cancelled"] is True and time.monotonic() - started < 5
    assert "early" not in execution.EARLY_CANCELS and "early" not in execution.CANCELS
    execution.EARLY_CANCELS.clear()
