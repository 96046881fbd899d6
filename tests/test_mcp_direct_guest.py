"""The stdio fast path (mcp/direct.py) on a real ``pyro mcp serve`` and a real sandbox: a
client that goes away while its direct exec runs (the unit cases: test_mcp_direct_review.py)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from support import INITIALIZE, INITIALIZED, pyro_argv
from workspace_fixtures import *  # noqa: F403 - the fixtures

pytestmark = pytest.mark.guest


@pytest.mark.parametrize("meta", [{}, {"_meta": {"progressToken": "p"}}], ids=["direct", "sdk"])
def test_a_client_that_closes_stdin_mid_exec_gets_its_command_cancelled(
    ws_home: Path,
    ws_pyro: Pyro,
    new_workspace: Callable[..., dict[str, Any]],
    meta: dict[str, Any],
) -> None:
    """The SDK cancels the requests it runs when stdin ends (Server.run), killing an exec's
    command; a direct exec (no progress token) was left running, and the server with it
    until ``sleep 60`` ended. Now both end within seconds, the exec recorded cancelled."""
    workspace_id = new_workspace()["workspace_id"]
    proc = subprocess.Popen(
        [*pyro_argv(), "mcp", "serve", "--profile", "workspace-core"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        assert proc.stdin is not None and proc.stdout is not None
        arguments = {"workspace_id": workspace_id, "command": "sleep 60", "timeout_seconds": 90}
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "workspace_exec", "arguments": arguments, **meta},
        }
        for message in (INITIALIZE, INITIALIZED, call):
            proc.stdin.write(json.dumps(message).encode() + b"\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == 1
        deadline = time.monotonic() + 30
        while not _sleeping(ws_pyro, workspace_id):
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.2)
        proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("the server still runs its direct exec 15 s after stdin ended")
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
    entries = ws_pyro.logs_workspace(workspace_id)["entries"]
    sleeper = [e for e in entries if e["command"] == "sleep 60"]
    assert len(sleeper) == 1 and sleeper[0]["cancelled"] is True, sleeper


def _sleeping(pyro: Pyro, workspace_id: str) -> bool:
    probe = pyro.exec_workspace(workspace_id, "pgrep -f 'sleep [6]0'")
    return probe["exit_code"] == 0
