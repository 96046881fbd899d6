"""A lifetime users control (issue 13b), on real sandboxes: a TTL extended (or shortened)
from now up to the operator's ceiling, followed by the supervisor without a restart; idle
stop (stopped, no engine left, start brings /workspace back); and the usage status shows."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from workspace_fixtures import *  # noqa: F403  (the fixtures)
from workspace_fixtures import (
    McpClient,
    cli_error,
    cli_json,
    engine_pids,
    run_cli,
    supervisor_pids,
    wait_for,
    workspace_processes,
)

pytestmark = pytest.mark.guest

MIB = 1024 * 1024


def test_extending_the_ttl_moves_the_expiry_and_the_workspace_outlives_it(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any
) -> None:
    wid = new_workspace(ttl_seconds=60)["workspace_id"]
    asked = time.time()
    short = ws_pyro.update_workspace(wid, ttl_seconds=4)  # due in 4 s from now
    assert short["ttl_seconds"] == 4
    assert short["expires_at"] == pytest.approx(asked + 4, abs=1)
    time.sleep(2)
    longer = ws_pyro.update_workspace(wid, ttl_seconds=10)  # the running supervisor follows
    assert longer["expires_at"] == pytest.approx(time.time() + 10, abs=1)
    time.sleep(max(0.0, short["expires_at"] + 3 - time.time()))  # well past the 4 s TTL
    assert ws_pyro.status_workspace(wid)["state"] == "started"
    assert ws_pyro.exec_workspace(wid, command="echo alive")["stdout"] == "alive\n"
    assert supervisor_pids(ws_home, wid)
    # ... and the extended expiry is kept too: the supervisor removes it then, unasked.
    wait_for(lambda: not workspace_processes(ws_home, wid), 15, "the supervisor to expire it")
    assert time.time() >= longer["expires_at"] - 0.5
    assert not (ws_home / "workspaces" / wid).exists()
    with pytest.raises(RuntimeError, match=r"expired \(ttl 10s\)"):
        ws_pyro.status_workspace(wid)


def maximum(schema: dict[str, Any]) -> Any:
    """A property's maximum, also inside ``anyOf`` (an optional argument)."""
    options = schema.get("anyOf", [schema])
    return next(option["maximum"] for option in options if "maximum" in option)


def test_an_extension_over_the_ceiling_is_refused_naming_it(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = new_workspace()
    wid = ws["workspace_id"]
    with pytest.raises(ValueError) as info:
        ws_pyro.update_workspace(wid, ttl_seconds=86401)
    assert str(info.value) == (
        "ttl_seconds must be between 1 and 86400 (got 86401): 86400 is the operator's "
        "ceiling (PYRO_MAX_TTL_SECONDS)"
    )
    assert ws_pyro.status_workspace(wid)["expires_at"] == ws["expires_at"]  # unchanged
    # The operator's setting, on the CLI (one line) and in the MCP schema.
    env = {"PYRO_MAX_TTL_SECONDS": "7200"}
    monkeypatch.setenv("PYRO_MAX_TTL_SECONDS", "7200")  # for the CLI processes
    error = cli_error("workspace", "update", wid, "--ttl-seconds", "7201", home=ws_home)
    assert error == (
        "ttl_seconds must be between 1 and 7200 (got 7201): 7200 is the operator's ceiling "
        "(PYRO_MAX_TTL_SECONDS)"
    )
    moved = cli_json("workspace", "update", wid, "--ttl-seconds", "7200", home=ws_home)
    assert moved["expires_at"] == pytest.approx(time.time() + 7200, abs=5)
    shown = run_cli("workspace", "status", wid, home=ws_home).stdout
    assert re.search(r"^lifetime: expires in 7(19\d|200)s$", shown, re.M), shown
    assert re.search(r"^usage: disk [\d.]+ MiB of 8192.0 MiB, memory [\d.]+ MiB, cpu ", shown, re.M)
    with McpClient(ws_home, "workspace-full", env=env) as mcp:
        tools = mcp.tools()
        for tool in ("workspace_create", "workspace_update"):
            props = tools[tool].inputSchema["properties"]
            assert maximum(props["ttl_seconds"]) == 7200, tool
            assert maximum(props["idle_stop_seconds"]) == 7200, tool
        message = mcp.error("workspace_update", workspace_id=wid, ttl_seconds=9000)
        assert "7200 is the operator's ceiling (PYRO_MAX_TTL_SECONDS)" in message
        assert "\n" not in message.strip()
        status = mcp.ok("workspace_update", workspace_id=wid, idle_stop_seconds=3600)
        assert status["idle_stop_seconds"] == 3600


@pytest.mark.parametrize("engine", ["gvisor", "qemu"])
def test_idle_stop_stops_the_engine_and_start_brings_workspace_back(
    engine: str, pyro_for: Any, ws_home: Path, new_workspace: Any
) -> None:
    ws_pyro = pyro_for(engine)
    ws = new_workspace(ws_pyro, idle_stop_seconds=6)
    wid = ws["workspace_id"]
    assert ws["idle_stop_seconds"] == 6
    ws_pyro.write_workspace_file(wid, "kept.txt", text="kept\n")
    status = ws_pyro.status_workspace(wid)
    assert status["idle_stop_at"] == pytest.approx(status["last_activity_at"] + 6)
    # A call in progress is activity: an exec longer than the idle time is not cut short.
    result = ws_pyro.exec_workspace(wid, command="sleep 9; echo done", timeout_seconds=60)
    assert result["stdout"] == "done\n"
    assert ws_pyro.status_workspace(wid)["state"] == "started"
    stopped = wait_for(
        lambda: (s := ws_pyro.status_workspace(wid))["state"] == "stopped" and s, 15, "idle stop"
    )
    assert stopped["last_error"] == "idle stop: no activity for 6s"
    assert stopped["idle_stop_at"] is None
    assert stopped["memory_used_bytes"] is None and stopped["cpu_time_seconds"] is None
    wait_for(lambda: not workspace_processes(ws_home, wid), 10, "no engine nor supervisor")
    assert engine_pids(ws_home, wid) == [] and supervisor_pids(ws_home, wid) == []
    assert (ws_home / "workspaces" / wid).is_dir()  # stopped, not deleted
    # Turned off, a started workspace stays up.
    assert ws_pyro.start_workspace(wid)["state"] == "started"
    assert ws_pyro.read_workspace_file(wid, "kept.txt")["content"] == "kept\n"
    assert ws_pyro.update_workspace(wid, idle_stop_seconds=0)["idle_stop_at"] is None
    time.sleep(8)
    assert ws_pyro.status_workspace(wid)["state"] == "started"


@pytest.mark.parametrize("engine", ["gvisor", "qemu"])
def test_status_usage_disk_grows_with_a_write_and_cpu_with_a_busy_loop(
    engine: str, pyro_for: Any, new_workspace: Any
) -> None:
    ws_pyro = pyro_for(engine)
    wid = new_workspace(ws_pyro, disk_mib=512)["workspace_id"]
    before = ws_pyro.status_workspace(wid)
    assert before["disk_limit_bytes"] == 512 * MIB
    assert 0 < before["disk_used_bytes"] < 64 * MIB
    assert before["memory_used_bytes"] > 1 * MIB
    assert before["cpu_time_seconds"] >= 0
    done = ws_pyro.exec_workspace(
        wid, command="dd if=/dev/urandom of=/workspace/big bs=1M count=50 status=none && sync"
    )
    assert done["exit_code"] == 0, done["stderr"]
    busy = ws_pyro.exec_workspace(wid, command="i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
    assert busy["exit_code"] == 0
    after = ws_pyro.status_workspace(wid)
    grew = after["disk_used_bytes"] - before["disk_used_bytes"]
    assert 48 * MIB <= grew <= 56 * MIB, grew
    assert after["cpu_time_seconds"] >= before["cpu_time_seconds"] + 0.3
    if engine == "gvisor":  # read from the supervisor's mount: a delete frees the blocks
        ws_pyro.exec_workspace(wid, command="rm /workspace/big && sync")
        freed = after["disk_used_bytes"] - ws_pyro.status_workspace(wid)["disk_used_bytes"]
        assert freed >= 48 * MIB, freed
    # A stopped workspace still shows its disk (the image's allocated size), no engine.
    stopped = ws_pyro.stop_workspace(wid)
    assert stopped["disk_used_bytes"] >= 50 * MIB
    assert stopped["memory_used_bytes"] is None
