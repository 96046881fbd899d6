"""The host cgroups around a gVisor sandbox: the backstop that bounds its memory, host tasks
and CPU whatever the guest does (engines/limits.py sets the sizes).

pyro makes them itself (a few writes) and starts `runsc run` inside them, with runsc's own
cgroup handling off: runsc making them cost ~40 ms of every start here. Everything runsc
starts (gofer, sentry, systrap stubs) inherits them. ``/sys/fs/cgroup/<controller>/
pyro-gvisor/<container id>`` on a cgroup v1 host; one directory under ``pyro-gvisor`` on v2.

CPU: the quota caps a sandbox at its vCPUs plus one for the engine (``limits.host_cpus``),
where that is fewer CPUs than the host has; elsewhere it would bound nothing and the sandbox
joins no CPU cgroup at all, since being in one costs every exec wake-up latency
(``limits.host_cpu_quota``). Its weight (shares) only matters when the host is
busy. Each sandbox weighs its vCPUs in busy tasks and ``pyro-gvisor`` (all sandboxes
together) one busy task per host CPU: at the default weight of one task, a sandbox on a busy
host ran ~15-25 % slower than the same runsc outside any cgroup (whose threads each count).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Iterable
from pathlib import Path

from ..procfs import stat_fields
from .limits import host_cpu_quota, host_memory_bytes, host_pids_limit, process_limit

ROOT = Path("/sys/fs/cgroup")
PARENT = "pyro-gvisor"
V1 = ("memory", "pids", "cpu")
PERIOD_US = 100_000
TASK_SHARES = 1024  # v1 cpu.shares of one busy task (v2: cpu.weight 100)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _weigh(path: Path, tasks: int) -> None:
    """Give the cgroup ``path`` the CPU weight of ``tasks`` busy tasks (best effort: it
    bounds nothing, so a host that refuses it still gets its limits)."""
    # v1 cpu.shares, else v2 cpu.weight (1-10000, one task 100)
    value = TASK_SHARES * tasks if path.name == "cpu.shares" else min(10_000, 100 * tasks)
    try:
        _write(path, str(value))
    except OSError:
        pass


class HostCgroups:
    def __init__(self, container_id: str, mem_mib: int = 0, vcpu_count: int = 1) -> None:
        self.v2 = (ROOT / "cgroup.controllers").exists()
        controllers = ("",) if self.v2 else V1
        # every one it may have (a removal takes them all); ``joined``: those it was made in
        self.dirs = [ROOT / c / PARENT / container_id for c in controllers]
        self.joined: list[Path] = []
        self.mem_mib = mem_mib
        self.vcpu_count = vcpu_count

    def create(self) -> None:
        """Make the cgroups with their limits (raises OSError where cgroups cannot be made)."""
        memory = str(host_memory_bytes(self.mem_mib))
        pids = str(host_pids_limit(self.mem_mib))
        cpus = host_cpu_quota(self.vcpu_count, os.cpu_count() or 1)
        quota = f"{cpus * PERIOD_US}" if cpus is not None else None
        if self.v2:
            (cgroup,) = self.joined = self.dirs
            cgroup.parent.mkdir(exist_ok=True)  # another sandbox may be starting too
            wanted = "+memory +pids" + (" +cpu" if quota else "")
            _write(cgroup.parent / "cgroup.subtree_control", wanted)
            cgroup.mkdir()
            _write(cgroup / "memory.max", memory)
            _write(cgroup / "pids.max", pids)
            if quota:
                _write(cgroup / "cpu.max", f"{quota} {PERIOD_US}")
            # weighed with or without a quota: pyro-gvisor is a CPU cgroup wherever the
            # root enables cpu, and a sandbox's own is one once any sandbox enabled cpu
            # below it (best effort: without the controller there is no file to write)
            _weigh(cgroup.parent / "cpu.weight", os.cpu_count() or 1)
            _weigh(cgroup / "cpu.weight", self.vcpu_count)
            return
        memory_dir, pids_dir, cpu_dir = self.dirs
        self.joined = [memory_dir, pids_dir, *([cpu_dir] if quota else [])]
        for path in self.joined:
            path.mkdir(parents=True, exist_ok=True)
        _write(memory_dir / "memory.limit_in_bytes", memory)
        _write(pids_dir / "pids.max", pids)
        if quota:
            _write(cpu_dir / "cpu.cfs_period_us", str(PERIOD_US))
            _write(cpu_dir / "cpu.cfs_quota_us", quota)
            _weigh(cpu_dir.parent / "cpu.shares", os.cpu_count() or 1)
            _weigh(cpu_dir / "cpu.shares", self.vcpu_count)

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` started inside the cgroups ``create`` made: a shell enters each, then
        execs it (a ``preexec_fn`` is unsafe in the threaded processes that start sandboxes)."""
        enter = "; ".join(f"echo 0 > {shlex.quote(str(p / 'cgroup.procs'))}" for p in self.joined)
        return ["/bin/sh", "-c", f'set -e; {enter}; exec "$@"', argv[0], *argv]

    def remove(self, wait: float = 2.0) -> None:
        """Remove them once their processes are gone (a sandbox's last processes may take
        a moment to exit after `runsc run` itself)."""
        deadline = time.monotonic() + wait
        for path in self.dirs:
            while True:
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break  # still in use: the next destroy or sweep tries again
                    time.sleep(0.02)

    @staticmethod
    def sweep(older_than: float = 60.0) -> None:
        """Remove the empty cgroups of sandboxes gone for a while (whose last processes
        outlived a removal's wait): never one that was just made for a starting sandbox."""
        now = time.time()
        # every controller's (v1): runsc made them in all of its own before pyro did
        for top in {ROOT / PARENT, *ROOT.glob(f"*/{PARENT}")}:
            try:
                entries = list(os.scandir(top))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_dir() and now - entry.stat().st_mtime > older_than:
                        os.rmdir(entry.path)  # fails while any process is in it
                except OSError:
                    pass

    def counters(self) -> dict[str, Path]:
        """The files that count how often each limit was hit."""
        if self.v2:
            (cgroup,) = self.dirs
            return {"pids": cgroup / "pids.events", "memory": cgroup / "memory.events"}
        return {
            "pids": self.dirs[1] / "pids.events",
            "memory": self.dirs[0] / "memory.oom_control",
        }


class CgroupWatch:
    """Whether the sandbox hit its host memory or task limit: the counters only grow and the
    cgroups stay until pyro removes them, so they are read once, when the sandbox ended."""

    def __init__(self, cgroups: HostCgroups) -> None:
        self.hit: str | None = None
        self.files = cgroups.counters()

    def check(self) -> None:
        # pids.events: "max N" (tasks refused); memory: "oom_kill N" (v1 oom_control, v2 events)
        for (what, path), event in zip(self.files.items(), ("max", "oom_kill"), strict=True):
            try:
                lines = path.read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) == 2 and fields[0] == event and fields[1] != "0":
                    self.hit = what

    def reason(self, code: int | None, mem_mib: int) -> str | None:
        """Once the sandbox ended with ``code``: the limit that ended it, if one did."""
        if code is not None and code != 0 and self.hit is None:
            self.check()  # before pyro removes the cgroups
        if code is None or code == 0 or self.hit is None:
            return None
        if self.hit == "memory":
            return f"memory limit ({mem_mib} MiB)"
        return f"process limit ({process_limit(mem_mib)} processes)"


def sandbox_usage(prefix: str) -> tuple[int | None, float | None]:
    """Memory in use (bytes) and CPU time (seconds) of the running sandbox whose container id
    starts with ``prefix`` (a workspace's, as ``container_id`` names it), from its host
    cgroups: (None, None) without one. v1 hosts join no cpuacct cgroup, so CPU time is its
    processes' own there."""
    v2 = (ROOT / "cgroup.controllers").exists()
    top = ROOT / PARENT if v2 else ROOT / "memory" / PARENT
    for cgroup in sorted(top.glob(f"{prefix}-*"), key=_mtime, reverse=True):
        pids = _read(cgroup / "cgroup.procs").split()
        if not pids:
            continue  # a sandbox that ended (its cgroup is removed shortly)
        if v2:
            memory = _read(cgroup / "memory.current")
            usage = dict(line.split() for line in _read(cgroup / "cpu.stat").splitlines())
            cpu = int(usage["usage_usec"]) / 1e6 if "usage_usec" in usage else None
            return (int(memory) if memory else None), cpu
        memory = _read(cgroup / "memory.usage_in_bytes")
        return (int(memory) if memory else None), process_seconds(int(p) for p in pids)
    return None, None


def process_seconds(pids: Iterable[int]) -> float:
    """User and system CPU time of processes (their threads and reaped children included)."""
    ticks = 0
    for pid in pids:
        fields = stat_fields(pid) or []
        if len(fields) > 14:  # utime stime cutime cstime: fields 14-17 of the full line
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
