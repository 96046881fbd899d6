"""`workspace stop --suspend` (issue 13): on QEMU the VM's memory is saved and `start`
resumes it, so processes, services and shells are still there; a memory image that cannot be
resumed falls back to a normal boot that says so; other engines refuse in one line.

Real sandboxes (workspaces/suspend.py, engines/qemu.py ``suspend``). QEMU runs as TCG here:
one test function does all the QEMU checks, to boot as few VMs as possible."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp.workspaces import suspend
from workspace_fixtures import *  # noqa: F403  (the fixtures)
from workspace_fixtures import run_cli

# A service whose pid is in /run: a tmpfs, new on every boot, kept only in the VM's memory.
TICKER = "echo $$ > /run/ticker.pid; while true; do date +%s > /run/ticker.last; sleep 1; done"
# A process started before the stop, outside any service (its own session).
SLEEPER = "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"


def _run(pyro: Any, wid: str, command: str) -> str:
    result = pyro.exec_workspace(wid, command=command)
    assert result["exit_code"] == 0, result
    return str(result["stdout"]).strip()


def _command_of(pyro: Any, wid: str, pid: str) -> str:
    """What process ``pid`` runs ("" if none: a number alone may be reused by a new boot)."""
    return _run(pyro, wid, f"tr '\\0' ' ' < /proc/{pid}/cmdline 2>/dev/null || true")


def _web_status(service: dict[str, Any]) -> int:
    port = service["published_ports"][0]["host_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20) as reply:
        return int(reply.status)


def _shell_text(pyro: Any, wid: str, shell_id: str, cursor: int = 0) -> str:
    read = pyro.read_shell(wid, shell_id, cursor=cursor, wait_for_idle_ms=1500)
    return str(read["output"])


@pytest.mark.guest
def test_qemu_suspend_resumes_processes_services_and_shells(
    qemu_pyro: Any, new_workspace: Any, ws_home: Path
) -> None:
    pyro = qemu_pyro
    wid = new_workspace(pyro, disk_mib=256, network_policy="egress+published-ports")["workspace_id"]
    image = ws_home / "workspaces" / wid / "memory.state"
    shell = pyro.open_shell(wid)["shell_id"]
    pyro.write_shell(wid, shell, "echo hello-before")
    assert "hello-before" in _shell_text(pyro, wid, shell)
    pyro.start_service(wid, "ticker", command=TICKER, ready_command="test -s /run/ticker.pid")
    service_pid = _run(pyro, wid, "cat /run/ticker.pid")
    sleeper = _run(pyro, wid, SLEEPER)
    web = {"command": "python3 -m http.server 8080", "ready_tcp": "127.0.0.1:8080"}
    pyro.start_service(wid, "web", **web, published_ports=[{"guest_port": 8080}])

    stopped = pyro.stop_workspace(wid, suspend=True)
    assert (stopped["state"], stopped["suspended"], stopped["last_error"]) == (
        "stopped",
        True,
        None,
    )
    assert image.is_file() and image.stat().st_size > 0
    assert pyro.status_workspace(wid)["suspended"] is True

    started = pyro.start_workspace(wid)
    assert (started["state"], started["suspended"], started["last_error"]) == (
        "started",
        False,
        None,
    )
    assert not image.exists()  # resumed from it, then removed
    # the very same processes: the service's pid in /run (a new boot has an empty /run)
    assert _run(pyro, wid, "cat /run/ticker.pid") == service_pid
    assert _command_of(pyro, wid, sleeper) == "sleep 1000"
    assert _run(pyro, wid, f"kill -0 {service_pid} && echo alive") == "alive"
    status = pyro.status_service(wid, "ticker")
    assert status["state"] == "running" and "restarted" not in status  # resumed, not restarted
    assert _web_status(pyro.status_service(wid, "web")) == 200  # its port published again
    # the shell: its earlier output is still there, and it still answers
    assert "hello-before" in _shell_text(pyro, wid, shell)
    pyro.write_shell(wid, shell, "echo hello-after")
    assert "hello-after" in _shell_text(pyro, wid, shell)

    # A memory image that cannot be resumed: a normal boot, services restarted, and it says so.
    pyro.stop_workspace(wid, suspend=True)
    image.write_bytes(b"not a QEMU migration stream\n" * 64)
    fallback = pyro.start_workspace(wid)
    assert fallback["state"] == "started" and not image.exists()
    why = fallback["last_error"] or ""
    assert why.startswith("resuming the suspended memory failed") and "\n" not in why, why
    assert "migration" in why  # QEMU's own words on the file it could not load
    restarted = pyro.status_service(wid, "ticker")
    assert (restarted["state"], restarted["restarted"]) == ("running", True)
    assert _run(pyro, wid, "cat /run/ticker.pid") != service_pid
    assert _command_of(pyro, wid, sleeper) != "sleep 1000"

    # A reset of a suspended workspace drops its memory image: a fresh system.
    pyro.stop_workspace(wid, suspend=True)
    assert image.is_file()
    pyro.reset_workspace(wid)
    assert not image.exists() and pyro.status_workspace(wid)["suspended"] is False


@pytest.mark.guest
def test_suspend_elsewhere_is_a_one_line_error(
    ws_pyro: Any, new_workspace: Any, ws_home: Path
) -> None:
    wid = new_workspace(ws_pyro)["workspace_id"]
    with pytest.raises(ValueError, match="keeps memory only on the qemu engine") as caught:
        ws_pyro.stop_workspace(wid, suspend=True)
    assert "\n" not in str(caught.value)
    assert ws_pyro.status_workspace(wid)["state"] == "started"  # nothing was stopped
    cli = run_cli("workspace", "stop", wid, "--suspend", home=ws_home)
    assert cli.returncode != 0
    assert cli.stderr.strip().count("\n") == 0 and suspend.NOT_HERE in cli.stderr
    stopped = ws_pyro.stop_workspace(wid)  # a plain stop: nothing kept in memory
    assert (stopped["state"], stopped["suspended"]) == ("stopped", False)


def test_suspend_check_names_the_engines_that_keep_memory() -> None:
    for engine in ("gvisor", "host"):
        with pytest.raises(ValueError, match="stop --suspend keeps memory only"):
            suspend.check({"engine": engine})
    suspend.check({"engine": "qemu-tcg"})  # a VM: allowed


class _FailingVm:
    """A sandbox whose save breaks half-way (QEMU died mid-migration)."""

    def suspend(self, target: Path) -> None:
        from pyro_mcp.engines.templates import partial_path
        from pyro_mcp.errors import SandboxError

        partial_path(target).write_bytes(b"half a state")
        raise SandboxError("saving the VM state failed (migration failed)")


def test_a_failed_save_leaves_no_image_and_says_why(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pyro_mcp.workspaces.layout import WorkspaceLayout

    layout = WorkspaceLayout(tmp_path, "abc")
    layout.root.mkdir(parents=True)
    updates: list[dict[str, Any]] = []
    store = SimpleNamespace(update=lambda wid, **fields: updates.append({"id": wid, **fields}))
    supervisor = SimpleNamespace(layout=layout, store=store, workspace_id="abc")
    suspend.save(supervisor, _FailingVm())  # type: ignore[arg-type]
    assert list(layout.root.iterdir()) == []  # neither the image nor its partial
    assert not suspend.suspended(layout)
    [update] = updates
    assert (update["id"], update["state"], update["supervisor_pid"]) == ("abc", "stopped", None)
    assert update["last_error"].startswith("stop --suspend could not save the memory")
    assert "\n" not in update["last_error"]
