"""`make bench --only suspend` (issue 13): a QEMU workspace's `stop --suspend` and the
`start` that resumes it, beside a plain stop and start of the same workspace (a normal boot,
its service started again) in the same run. For information: QEMU here is usually TCG
(emulated), so these are TCG figures.

Each round: plain stop, plain start (timed: the boot), stop --suspend (timed: saving the
memory), start (timed: the resume). A resume is checked to be one: the service's pid, kept
in /run (a tmpfs, new on every boot), is unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench_support import Stats, timed

ENVIRONMENT = "debian:12"
SERVICE = "echo $$ > /run/svc.pid; exec sleep 100000"


def _pid(pyro: Any, wid: str) -> str:
    result = pyro.exec_workspace(wid, "cat /run/svc.pid")
    if result["exit_code"] != 0:
        raise RuntimeError(f"bench: the service's pid file is missing: {result}")
    return str(result["stdout"]).strip()


def _round(pyro: Any, wid: str, image: Path) -> tuple[float, float, float, int]:
    pyro.stop_workspace(wid)
    boot, _ = timed(lambda: pyro.start_workspace(wid))
    before = _pid(pyro, wid)
    save, stopped = timed(lambda: pyro.stop_workspace(wid, suspend=True))
    if not stopped["suspended"]:
        raise RuntimeError(f"bench: stop --suspend kept no memory: {stopped['last_error']}")
    size = image.stat().st_size
    resume, started = timed(lambda: pyro.start_workspace(wid))
    if started["last_error"] or _pid(pyro, wid) != before:
        raise RuntimeError(f"bench: the start did not resume: {started['last_error']}")
    return boot, save, resume, size


def section_suspend(bench: Any) -> None:
    runs = bench.args.qemu_runs
    print(f"\n== QEMU workspace: stop --suspend and resume vs plain stop/start ({runs} rounds) ==")
    boots: list[float] = []
    saves: list[float] = []
    resumes: list[float] = []
    sizes: list[int] = []
    with bench.pyro("qemu") as pyro:
        ws = pyro.create_workspace(environment=ENVIRONMENT, disk_mib=256)
        wid = ws["workspace_id"]
        try:
            pyro.start_service(wid, "svc", command=SERVICE, ready_command="test -s /run/svc.pid")
            image = bench.home / "workspaces" / wid / "memory.state"
            for _ in range(runs):
                boot, save, resume, size = _round(pyro, wid, image)
                boots.append(boot)
                saves.append(save)
                resumes.append(resume)
                sizes.append(size)
        finally:
            pyro.delete_workspace(wid)
    engine, mem = ws["engine"], ws["mem_mib"]
    print(f"engine {engine}, {mem} MiB guest memory (figures for information)")
    print(f"plain start (a boot; the service started again): {Stats(boots).seconds()}")
    print(f"stop --suspend (memory saved):                   {Stats(saves).seconds()}")
    print(f"start from suspend (resumed, same processes):    {Stats(resumes).seconds()}")
    print(f"memory image: {max(sizes) / 1048576:.0f} MiB at most (removed by the resume)")
