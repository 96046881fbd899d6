"""Progress notifications and cancellation over MCP (the official client), and an exec's
cwd, env and stdin on the SDK and the CLI (the pure logic: test_exec_cancel_logic.py)."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.shared.exceptions import McpError
from mcp.types import CancelledNotification, CancelledNotificationParams, ClientNotification

from pyro_mcp import Pyro
from support import ENVIRONMENT, as_at_a_terminal, processes_mentioning, pyro_argv
from workspace_fixtures import *  # noqa: F403 - the fixtures
from workspace_fixtures import McpClient, run_cli

pytestmark = pytest.mark.guest

EXEC_6S = "for i in 1 2 3 4 5 6; do echo tick $i; sleep 1; done"


def test_a_6s_exec_with_a_progress_token_gets_progress_carrying_output(ws_home: Path) -> None:
    with McpClient(ws_home) as client:
        workspace_id = client.ok("workspace_create", environment=ENVIRONMENT)["workspace_id"]
        try:
            notes: list[tuple[float, str | None]] = []

            async def on_progress(
                progress: float, total: float | None, message: str | None
            ) -> None:
                notes.append((progress, message))

            assert client.session is not None
            arguments = {"workspace_id": workspace_id, "command": EXEC_6S}
            call = client.session.call_tool(
                "workspace_exec", arguments, progress_callback=on_progress
            )
            result = client._submit(call, 60)
            assert result.isError is False, result.content
            assert result.structuredContent["stdout"].count("tick") == 6
            assert notes, "no progress notification"
            assert any(message and message.startswith("tick ") for _, message in notes), notes
            values = [progress for progress, _ in notes]
            assert values == sorted(values) and len(set(values)) == len(values), notes
            # an error of a call with a progress token is the tool's one-line error
            bad = {"workspace_id": workspace_id, "command": "true", "cwd": "/etc"}
            call = client.session.call_tool("workspace_exec", bad, progress_callback=on_progress)
            failed = client._submit(call, 60)
            assert failed.isError is True
            text = failed.content[0].text
            assert "workspace path must stay inside /workspace" in text and "\n" not in text
            # without one, the stdio fast path runs it (mcp/direct.py): the same answer
            plain = client._submit(client.session.call_tool("workspace_exec", bad), 60)
            assert plain.isError is True and plain.content[0].text == text
        finally:
            client.ok("workspace_delete", workspace_id=workspace_id)


async def _exec_then_cancel(
    session: ClientSession,
    tool: str,
    arguments: dict[str, Any],
    running: Callable[[], bool] = lambda: True,
) -> float:
    """Start ``sleep 60``, cancel it once ``running()`` (within 30 s) and 1.5 s have passed;
    return when the cancel was sent."""
    request_id = session._request_id  # the id the next request is sent with
    arguments = {**arguments, "command": "sleep 60", "timeout_seconds": 90}
    task = asyncio.create_task(session.call_tool(tool, arguments))
    await asyncio.sleep(1.5)
    deadline = time.monotonic() + 30
    while not running():
        assert time.monotonic() < deadline, "the command never started"
        await asyncio.sleep(0.1)
    assert not task.done()
    params = CancelledNotificationParams(requestId=request_id, reason="test")
    await session.send_notification(ClientNotification(CancelledNotification(params=params)))
    cancelled_at = time.monotonic()
    with pytest.raises(McpError, match="cancelled"):
        await asyncio.wait_for(task, 10)
    return cancelled_at


def test_a_cancelled_exec_is_killed_in_the_guest_and_recorded_cancelled(ws_home: Path) -> None:
    with McpClient(ws_home) as client:
        workspace_id = client.ok("workspace_create", environment=ENVIRONMENT)["workspace_id"]
        try:
            assert client.session is not None
            cancel = _exec_then_cancel(
                client.session, "workspace_exec", {"workspace_id": workspace_id}
            )
            cancelled_at = client._submit(cancel, 30)
            # The guest's process is gone within 2 s ('[6]' keeps the probe from finding
            # its own shell).
            while True:
                probe = client.ok(
                    "workspace_exec", workspace_id=workspace_id, command="pgrep -f 'sleep [6]0'"
                )
                if probe["exit_code"] == 1:
                    break
                assert time.monotonic() - cancelled_at < 2.0, probe
                time.sleep(0.1)
            assert time.monotonic() - cancelled_at < 2.0
            entries = client.ok("workspace_logs", workspace_id=workspace_id)["entries"]
            sleeper = [e for e in entries if e["command"] == "sleep 60"]
            assert len(sleeper) == 1, entries
            assert sleeper[0]["cancelled"] is True
            assert sleeper[0]["exit_code"] == 130
            assert "cancelled" in sleeper[0]["stderr"]
            assert sleeper[0]["duration_ms"] < 10000
            assert all(e["cancelled"] is False for e in entries if e is not sleeper[0])
            shown = run_cli("workspace", "logs", workspace_id, home=ws_home)
            assert "exit_code=130 cancelled=True" in shown.stdout, shown
        finally:
            client.ok("workspace_delete", workspace_id=workspace_id)


def test_a_cancelled_vm_exec_ends_at_once(ws_home: Path) -> None:
    """vm_exec deletes its VM when the command ends: a cancelled ``sleep 60`` must end (and
    the VM with it) within 2 s, not after a minute."""
    with McpClient(ws_home, profile="workspace-full") as client:
        vm_id = client.ok("vm_create", environment=ENVIRONMENT)["vm_id"]
        client.ok("vm_start", vm_id=vm_id)
        assert client.session is not None
        cancel = _exec_then_cancel(client.session, "vm_exec", {"vm_id": vm_id})
        cancelled_at = client._submit(cancel, 30)
        while client.call("vm_status", vm_id=vm_id).isError is False:
            assert time.monotonic() - cancelled_at < 2.0, "the vm_exec still runs"
            time.sleep(0.1)
        assert "does not exist" in client.error("vm_status", vm_id=vm_id)


def test_a_cancelled_one_shot_vm_run_ends_its_sandbox(ws_home: Path) -> None:
    """vm_run on gVisor without a network is a one-shot sandbox (no agent): a cancel kills
    its processes, so the sandbox is gone within 2 s."""
    with McpClient(ws_home) as client:
        assert client.session is not None

        def sandboxes() -> list[str]:
            return [line for line in processes_mentioning(str(ws_home)) if "runsc" in line]

        args = {"environment": ENVIRONMENT}
        cancel = _exec_then_cancel(client.session, "vm_run", args, lambda: bool(sandboxes()))
        cancelled_at = client._submit(cancel, 60)
        while sandboxes():
            assert time.monotonic() - cancelled_at < 2.0, sandboxes()
            time.sleep(0.1)


def test_exec_cwd_env_and_stdin_through_the_sdk(ws_pyro: Pyro, new_workspace: Any) -> None:
    workspace_id = new_workspace()["workspace_id"]
    ws_pyro.exec_workspace(workspace_id, "mkdir -p sub/dir")
    result = ws_pyro.exec_workspace(
        workspace_id,
        'pwd; echo "$GREETING $WHO"; cat; echo "[$HOME]"',
        cwd="sub/dir",
        env={"GREETING": "hello", "WHO": "there", "HOME": "/tmp"},
        stdin="line one\nline two\n",
    )
    assert result["exit_code"] == 0, result
    assert result["stdout"] == "/workspace/sub/dir\nhello there\nline one\nline two\n[/tmp]\n"
    assert result["cwd"] == "/workspace/sub/dir" and result["cancelled"] is False
    # without stdin the command reads /dev/null; the default cwd is /workspace
    plain = ws_pyro.exec_workspace(workspace_id, "pwd; cat; echo end")
    assert plain["stdout"] == "/workspace\nend\n"
    logs = ws_pyro.logs_workspace(workspace_id)["entries"]
    assert logs[1]["cwd"] == "/workspace/sub/dir"
    for bad, message in (
        ("../etc", "workspace path must stay inside /workspace"),
        ("/etc", "workspace path must stay inside /workspace"),
        ("missing", "cwd '/workspace/missing' is not a directory"),
    ):
        with pytest.raises(ValueError, match=message):
            ws_pyro.exec_workspace(workspace_id, "true", cwd=bad)
    with pytest.raises(ValueError, match="stdin is 1048577 bytes long; the limit is 1048576"):
        ws_pyro.exec_workspace(workspace_id, "true", stdin="x" * (1024 * 1024 + 1))
    big = ws_pyro.exec_workspace(workspace_id, "wc -c", stdin="y" * (1024 * 1024))
    assert big["stdout"].strip() == str(1024 * 1024)


def test_exec_cwd_env_and_stdin_through_the_cli(
    ws_home: Path, new_workspace: Any, host_dir: Path
) -> None:
    workspace_id = new_workspace()["workspace_id"]
    (host_dir / "input.txt").write_text("from a file\n")
    run = run_cli(
        "workspace", "exec", workspace_id, "--cwd", "/workspace/made",
        "--env", "A=1", "--env", "B=two words", "--stdin-file", str(host_dir / "input.txt"),
        "--json", "--", "sh", "-c", 'pwd; echo "$A|$B"; cat',
        home=ws_home,
    )  # fmt: skip
    assert run.returncode == 1, (run.stdout, run.stderr)  # the directory does not exist
    assert "cwd '/workspace/made' is not a directory" in run.stdout
    assert "Traceback" not in run.stderr
    run = run_cli(
        "workspace", "exec", workspace_id,
        "--env", "A=1", "--env", "B=two words", "--stdin-file", str(host_dir / "input.txt"),
        "--json", "--", 'mkdir -p made && cd made && pwd; echo "$A|$B"; cat',
        home=ws_home,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert json.loads(run.stdout)["stdout"] == "/workspace/made\n1|two words\nfrom a file\n"
    run = run_cli(
        "workspace", "exec", workspace_id, "--cwd", "made", "--", "pwd",
        home=ws_home,
    )  # fmt: skip
    assert (run.returncode, run.stdout) == (0, "/workspace/made\n"), run.stderr
    bad = run_cli("workspace", "exec", workspace_id, "--env", "NOVALUE", "--", "true", home=ws_home)
    assert bad.returncode != 0 and "--env expects NAME=VALUE, got 'NOVALUE'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_stdin_dash_reads_the_cli_own_stdin(ws_home: Path, new_workspace: Any) -> None:
    workspace_id = new_workspace()["workspace_id"]
    proc = subprocess.run(
        [*pyro_argv(), "workspace", "exec", workspace_id, "--stdin-file", "-", "--", "tr a-z A-Z"],
        input="piped in\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYRO_HOME": str(ws_home), "PYRO_ENGINE": "gvisor"},
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, "PIPED IN\n"), proc.stderr


def test_ctrl_c_on_cli_exec_cancels_the_guest_command(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any
) -> None:
    workspace_id = new_workspace()["workspace_id"]
    proc = subprocess.Popen(
        [*pyro_argv(), "workspace", "exec", workspace_id, "--", "echo started; sleep 60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYRO_HOME": str(ws_home), "PYRO_ENGINE": "gvisor"},
        preexec_fn=as_at_a_terminal,
    )
    try:
        assert proc.stdout is not None
        ready = select.select([proc.stdout], [], [], 60)[0]  # the command runs in the guest
        assert ready and proc.stdout.readline() == "started\n", proc.poll()
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=5)  # the watchdog: never the whole minute
        out = "started\n" + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert out == "started\n" and "command cancelled by the client" in err, (out, err)
    assert "Traceback" not in err
    entry = ws_pyro.logs_workspace(workspace_id)["entries"][-1]
    assert (entry["command"], entry["cancelled"]) == ("echo started; sleep 60", True)
    probe = ws_pyro.exec_workspace(workspace_id, "pgrep -f 'sleep [6]0'")
    assert probe["exit_code"] == 1, probe
