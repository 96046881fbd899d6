"""A supervisor started ahead (workspaces/supervisor_start.py): used only in the environment
it was started in, found as the workspace's supervisor once it has its job, and never left
behind by the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from pyro_mcp.workspaces import owners
from pyro_mcp.workspaces.supervisor_start import SPARE_FLAG, Spares
from support import processes_mentioning
from workspace_fixtures import *  # noqa: F403 - the fixtures

MODULE = "pyro_mcp.workspaces.supervisor"


def _parent(line: str) -> str:
    pid = line.split(maxsplit=1)[0]
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    except OSError:
        return ""


def _kill_starter_and_expect_its_spare_gone(proc: subprocess.Popen[bytes]) -> None:
    """``proc`` printed "ready" once its spare was started: kill it; the spare must end."""
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    mine = [p for p in processes_mentioning(SPARE_FLAG) if _parent(p) == str(proc.pid)]
    assert len(mine) == 1
    spare = int(mine[0].split()[0])
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while owners.identity(spare) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert owners.identity(spare) is None, "the spare outlived its starter"


def test_a_spare_is_not_used_once_the_environment_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spares = Spares()
    spares.prepare(MODULE)
    pid = spares.waiting()
    assert pid is not None and owners.identity(pid) is not None
    monkeypatch.setenv("PYRO_SPARE_TEST", "changed")
    assert spares.take({"home": "/nonexistent"}) is None  # discarded, not handed the job
    assert owners.identity(pid) is None and spares.waiting() is None


def test_a_dead_spare_is_not_used() -> None:
    spares = Spares()
    spares.prepare(MODULE)
    pid = spares.waiting()
    assert pid is not None
    os.kill(pid, 9)
    time.sleep(0.2)
    assert spares.take({"home": "/nonexistent"}) is None


def test_a_spare_ends_with_the_process_that_started_it(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import time
        from pyro_mcp.workspaces.supervisor_start import Spares
        Spares().prepare({MODULE!r})
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        _kill_starter_and_expect_its_spare_gone(proc)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.guest
def test_a_workspace_started_by_a_spare_is_found_and_ends_cleanly(
    ws_pyro: Pyro, new_workspace: Any, ws_home: Path
) -> None:
    first = new_workspace()["workspace_id"]  # its spawn starts a spare for the next one
    second = new_workspace()["workspace_id"]
    for workspace_id in (first, second):
        record = ws_pyro.status_workspace(workspace_id)
        assert record["state"] == "started", record
        assert ws_pyro.exec_workspace(workspace_id, "echo hi")["stdout"] == "hi\n"
        assert owners.supervisors(ws_home, workspace_id), "its supervisor is not found"
    recorded = (ws_home / "workspaces" / second / "supervisor.pids").read_text().split()
    assert recorded and all(":" in owner for owner in recorded)
    ws_pyro.stop_workspace(second)
    assert owners.supervisors(ws_home, second) == []
    ws_pyro.start_workspace(second)
    assert ws_pyro.exec_workspace(second, "echo again")["stdout"] == "again\n"


def test_a_spare_killed_after_its_job_was_written_fails_the_start_at_once(
    ws_pyro: Pyro, ws_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job sits in the pipe, unread, when the spare dies: no supervisor will ever write
    # a status. The start must say so now, not after SUPERVISOR_START_TIMEOUT (5 minutes).
    from pyro_mcp.errors import SandboxError
    from pyro_mcp.workspaces import lifecycle as lifecycle_module

    monkeypatch.setattr(lifecycle_module, "SUPERVISOR_START_TIMEOUT", 20.0)  # the watchdog
    lifecycle = ws_pyro.manager.workspaces.lifecycle
    workspace_id = "0123456789ab"  # none: only its status path is looked at
    spares = Spares()
    spares.prepare(MODULE)
    pid = spares.waiting()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    job = {"home": str(ws_home), "cache": str(ws_home), "workspace": workspace_id}
    first = spares.take({**job, "log": os.devnull, "cwd": "/"})
    assert first is not None, "the stopped spare was not handed the job"
    os.kill(pid, signal.SIGKILL)
    began = time.monotonic()
    with pytest.raises(SandboxError, match="failed to start") as caught:
        lifecycle.wait_status(workspace_id, first)
    assert time.monotonic() - began < 5, "it waited for a status no process would write"
    assert "\n" not in str(caught.value)


def test_a_forked_child_does_not_keep_its_parents_spare(tmp_path: Path) -> None:
    # A child forked by an SDK user (multiprocessing's fork) inherits the spare's pipe: the
    # spare must still end with the process that started it, whatever the child does.
    script = textwrap.dedent(
        f"""
        import os, time
        from pyro_mcp.workspaces.supervisor_start import Spares
        spares = Spares()
        spares.prepare({MODULE!r})
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        _kill_starter_and_expect_its_spare_gone(proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the forked child too
        proc.wait()
