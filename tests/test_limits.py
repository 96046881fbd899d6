"""Resource limits hold on every engine, and exceeding one hurts only the guest.

Each test keeps its limits small (512 MiB, so 128 processes) and runs a watchdog of its own
beside the sandbox: if a limit fails to hold, the watchdog ends the workspace's processes and
the test fails, instead of the machine running out of processes or memory.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from pyro_mcp.engines.gvisor_cgroups import PARENT
from pyro_mcp.engines.limits import host_memory_bytes, host_pids_limit, process_limit
from workspace_fixtures import *  # noqa: F403

pytestmark = pytest.mark.guest

ENGINES = ("gvisor", "qemu")
MEM_MIB = 512
HOST_PROCESS_CEILING = 3000  # the test's own watchdog: far above any limit that holds
QEMU_OVERHEAD_MIB = 640  # QEMU's own memory beside the guest's RAM (TCG's code cache: 256)


@pytest.fixture
def engine_pyro(request: Any, ws_pyro: Pyro, qemu_pyro: Pyro) -> Pyro:
    return ws_pyro if request.param == "gvisor" else qemu_pyro


def host_processes() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


def cgroup_files(controller: str, workspace_id: str, name: str) -> list[Path]:
    root = Path(f"/sys/fs/cgroup/{controller}/{PARENT}")
    return sorted(root.glob(f"pyro-{workspace_id}-*/{name}"))


class Watchdog:
    """Samples the host while a limit is attacked; past the ceiling it kills every process
    of the module's state dir (the sandbox with them) so the test fails, not the host."""

    def __init__(self, home: Path, sample: Any = None) -> None:
        self.home = home
        self.sample = sample or (lambda: 0)
        self.peak_processes = 0
        self.peak_sample = 0
        self.tripped = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self) -> Watchdog:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def run(self) -> None:
        while not self.done.wait(0.2):
            count = host_processes()
            self.peak_processes = max(self.peak_processes, count)
            try:
                self.peak_sample = max(self.peak_sample, int(self.sample()))
            except (OSError, ValueError):
                pass
            if count > HOST_PROCESS_CEILING:
                self.tripped = True
                subprocess.run(["pkill", "-9", "-f", str(self.home)], check=False)
                return


def first_true_exec(pyro: Pyro, workspace_id: str, within: float) -> float:
    """Seconds until the workspace answers ``true`` (retrying while it restarts)."""
    started = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - started < within:
        try:
            result = pyro.exec_workspace(workspace_id, command="true", timeout_seconds=10)
        except (RuntimeError, ValueError) as exc:  # restarting after the backstop
            last = exc
            time.sleep(0.2)
            continue
        assert result["exit_code"] == 0
        return time.monotonic() - started
    raise AssertionError(f"no answer to `true` within {within} s: {last}")


BOMB = "bash -c ':(){ :|:& };:' 2>/dev/null; sleep 30"
# The guest is root: it can leave the guest's pids cgroup and raise its cap first.
ESCAPE = "echo $$ > /run/pyro-limits/cgroup.procs; echo 100000 > /run/pyro-limits/guest/pids.max; "


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("engine_pyro", "command"),
    [("gvisor", BOMB), ("qemu", BOMB), ("gvisor", ESCAPE + BOMB), ("qemu", ESCAPE + BOMB)],
    ids=["gvisor", "qemu", "gvisor-escaped", "qemu-escaped"],
    indirect=["engine_pyro"],
)
def test_fork_bomb_stays_inside_the_workspace(
    engine_pyro: Pyro, command: str, new_workspace: Any, ws_home: Path
) -> None:
    workspace = new_workspace(engine_pyro, mem_mib=MEM_MIB)
    workspace_id = workspace["workspace_id"]
    engine_pyro.exec_workspace(workspace_id, command="echo kept > /workspace/kept")
    gvisor = workspace["engine"] == "gvisor"
    if gvisor:  # the host backstop is in place, with the limit engines/limits.py sets
        (pids_max,) = cgroup_files("pids", workspace_id, "pids.max")
        assert int(pids_max.read_text()) == host_pids_limit(MEM_MIB)
    before = host_processes()

    def sandbox_tasks() -> int:
        return sum(int(f.read_text()) for f in cgroup_files("pids", workspace_id, "pids.current"))

    escaped = command.startswith(ESCAPE)
    with Watchdog(ws_home, sandbox_tasks) as watch:
        try:  # the exec's time limit kills the bomb's process group in the guest
            result = engine_pyro.exec_workspace(workspace_id, command=command, timeout_seconds=8)
            assert result["exit_code"] in (124, 137), result
        except RuntimeError as exc:
            # gVisor's backstop ended and restarted the sandbox; or, in a VM, a root guest's
            # escaped bomb starved the agent: it was restarted too (watchers.restart_if_mute)
            assert gvisor or (escaped and "restarted" in str(exc)), exc
        answered = first_true_exec(engine_pyro, workspace_id, within=5.0)
    assert not watch.tripped, f"the host reached {watch.peak_processes} processes"
    if gvisor:
        assert watch.peak_sample <= host_pids_limit(MEM_MIB)
    else:  # the VM is one host process whatever its guest does
        assert watch.peak_processes - before < 100
    assert answered < 5.0
    status = engine_pyro.status_workspace(workspace_id)
    assert status["state"] == "started"
    if status["last_error"]:
        why = "process limit" if gvisor else "stopped answering"
        assert why in status["last_error"], status["last_error"]
    kept = engine_pyro.exec_workspace(workspace_id, command="cat /workspace/kept")
    assert kept["stdout"] == "kept\n"
    # In the guest: a fork past the cap fails with EAGAIN, and the cap is the documented one.
    probe = engine_pyro.exec_workspace(
        workspace_id, command="cat /run/pyro-limits/guest/pids.max", timeout_seconds=30
    )
    assert int(probe["stdout"]) >= process_limit(MEM_MIB)


def sandbox_memory_peak(workspace_id: str, gvisor: bool) -> int:
    """Bytes: the gVisor sandbox's host cgroup peak, or the QEMU process's peak RSS."""
    if gvisor:
        (peak,) = cgroup_files("memory", workspace_id, "memory.max_usage_in_bytes")
        return int(peak.read_text())
    out = subprocess.run(["pgrep", "-f", f"qemu.*{workspace_id}"], capture_output=True, text=True)
    peak = 0
    for pid in out.stdout.split():
        status = Path(f"/proc/{pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        peak = max(peak, int(match.group(1)) * 1024 if match else 0)
    assert peak > 0, "no QEMU process found for the workspace"
    return peak


@pytest.mark.timeout(240)
@pytest.mark.parametrize("engine_pyro", ENGINES, indirect=True)
def test_a_huge_allocation_fails_inside_the_guest(
    engine_pyro: Pyro, new_workspace: Any, ws_home: Path
) -> None:
    workspace = new_workspace(engine_pyro, mem_mib=MEM_MIB)
    workspace_id = workspace["workspace_id"]
    gvisor = workspace["engine"] == "gvisor"
    with Watchdog(ws_home):
        result = engine_pyro.exec_workspace(
            workspace_id,
            command="python3 -c 'b = bytearray(4 << 30); print(len(b))'",
            timeout_seconds=120,
        )
    # A guest MemoryError (exit 1) or the guest's OOM kill of that process (137).
    assert result["exit_code"] in (1, 137), result
    assert "4294967296" not in result["stdout"]
    if gvisor:  # the agent's watchdog says what it did, in the command's own stderr
        assert (
            "was killed: the workspace went over its memory limit (512 MiB" in (result["stderr"])
        ), result["stderr"]
    peak = sandbox_memory_peak(workspace_id, gvisor)
    ceiling = host_memory_bytes(MEM_MIB) if gvisor else (MEM_MIB + QEMU_OVERHEAD_MIB) << 20
    assert peak <= ceiling, f"sandbox peak {peak >> 20} MiB over {ceiling >> 20} MiB"
    after = engine_pyro.exec_workspace(workspace_id, command="echo alive", timeout_seconds=30)
    assert after["stdout"] == "alive\n"
    status = engine_pyro.status_workspace(workspace_id)
    assert status["state"] == "started" and not status["last_error"], status


@pytest.mark.timeout(240)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_one_shot_run_stays_inside_its_memory(engine: str, ws_home: Path) -> None:
    command = "python3 -c 'b = bytearray(4 << 30); print(len(b))'"
    with Watchdog(ws_home), Pyro(backend_name=engine, base_dir=ws_home) as pyro:
        if engine == "gvisor":
            # No agent in a gVisor one-shot: the host cgroup ends the sandbox, and says so.
            with pytest.raises(RuntimeError, match=r"over its memory limit \(512 MiB\)"):
                pyro.run_in_vm(environment="debian:12", command=command, mem_mib=MEM_MIB)
            return
        result = pyro.run_in_vm(environment="debian:12", command=command, mem_mib=MEM_MIB)
    assert result["exit_code"] in (1, 137), result
