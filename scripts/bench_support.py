"""Plumbing for scripts/bench.py: statistics, timed subprocesses, bare engines, cleanup.

The bare engines reuse pyro's own recipe (``oci_config``, ``GvisorEngine.runsc_base``,
``QemuEngine.command``, the environment's initramfs) so that a ratio compares pyro against
the very same engine invocation, not against a differently tuned one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyro_mcp.engines.base import BootSpec
from pyro_mcp.engines.gvisor import GvisorEngine, oci_config
from pyro_mcp.engines.qemu import QemuEngine, agent_initrd
from pyro_mcp.engines.qmp import Qmp
from pyro_mcp.engines.templates import incoming_argument, resume
from pyro_mcp.environments.initramfs import INIT_SCRIPT, CpioWriter
from pyro_mcp.environments.store import InstalledEnvironment

BARE_MARKER = "PYRO_BENCH_BARE_READY"


# -- statistics --------------------------------------------------------------------------
@dataclass
class Stats:
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    @property
    def p90(self) -> float:
        if len(self.samples) < 2:
            return self.samples[0]
        return statistics.quantiles(self.samples, n=10, method="inclusive")[8]

    def seconds(self) -> str:
        spread = f"min {self.low:.3f}, max {self.high:.3f}, n={len(self)}"
        return f"median {self.median:.3f} s ({spread})"

    def millis(self) -> str:
        return (
            f"median {self.median * 1000:.1f} ms, p90 {self.p90 * 1000:.1f} ms "
            f"(min {self.low * 1000:.1f}, max {self.high * 1000:.1f}, n={len(self)})"
        )

    def __len__(self) -> int:
        return len(self.samples)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def cpu_times(stat_line: str) -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs from the first line of /proc/stat (idle + iowait)."""
    fields = [int(v) for v in stat_line.split()[1:]]
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields)


class HostIdle:
    """How idle the host's CPUs were while the timed calls ran (``measure`` wraps each).

    The warm exec figure tracks it: every pyro exec starts a process in the sandbox, and a
    new address space under gVisor's systrap costs a chain of wake-ups and page faults that
    wait whenever the CPUs are busy. Measured on 2 cores with other developers' guest tests
    beside it, 10-call blocks took 24-42 ms while the host was under 18 % idle and 7-25 ms
    at 28-39 % (pyro's own calls keep about one CPU busy, so ~40-50 % is a quiet host).
    """

    def __init__(self) -> None:
        self.idle = 0
        self.total = 0

    @staticmethod
    def _now() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            return cpu_times(handle.readline())

    def measure(self, step: Callable[[], float]) -> float:
        idle, total = self._now()
        result = step()
        idle_after, total_after = self._now()
        self.idle += idle_after - idle
        self.total += total_after - total
        return result

    def describe(self) -> str:
        share = self.idle / self.total if self.total else 0.0
        return (
            f"host CPUs {share:.0%} idle during these calls "
            f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
            "a quiet host shows ~40-50 %, and under ~20 % other load dominates this figure)"
        )


# -- subprocesses that are always reaped ---------------------------------------------------
def wait_for(predicate: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting")
        time.sleep(0.02)


def alternate_blocks(
    first: Callable[[], float],
    second: Callable[[], float],
    runs: int,
    block: int = 25,
    settle: int = 5,
) -> tuple[list[float], list[float]]:
    """``runs`` samples of each, taken in alternating blocks of ``block`` calls, each block
    led by ``settle`` untimed calls.

    For the millisecond exec figures on a 2-core host. Sample-by-sample interleaving put
    every pyro exec right behind a `runsc exec`, whose sandbox stays busy for some
    milliseconds after the command returns (gVisor's systrap threads keep spinning), and
    the first calls after the switch pay for that neighbour's tail. Blocks still spread
    slow background drift over both sides alike; the settling calls keep the neighbour's
    tail out of a "warm" figure. Cold calls (after idle) are measured on their own.
    """
    a: list[float] = []
    b: list[float] = []
    while len(a) < runs or len(b) < runs:
        for samples, step in ((a, first), (b, second)):
            count = min(block, runs - len(samples))
            if count <= 0:
                continue
            for _ in range(settle):
                step()
            for _ in range(count):
                samples.append(step())
    return a, b


def run_checked(
    cmd: Sequence[str], *, timeout: float = 120, env: dict[str, str] | None = None, what: str = ""
) -> float:
    """Run ``cmd`` to completion; return its wall time. Never leaves it running.

    Output goes to an unnamed file, not a pipe: a detached child (``runsc run --detach``)
    inherits it and would keep a pipe open forever. On a timeout or an interrupt the child gets
    SIGTERM first (pyro's CLI deletes its sandbox on SIGTERM), then SIGKILL.
    """
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), stdin=subprocess.DEVNULL, stdout=output, stderr=output, env=env
        )
        try:
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            output.seek(0)
            tail = output.read().decode(errors="replace").strip()[-600:]
            raise RuntimeError(f"{what or cmd[0]} exited {proc.returncode}: {tail}")
    return elapsed


# -- gVisor ---------------------------------------------------------------------------------
class BareRunsc:
    """runsc with pyro's flags and pyro's OCI config, but a process of our choosing."""

    def __init__(self, root: Path, env: InstalledEnvironment, agent_dir: Path) -> None:
        self.root = root
        self.state = root / "runsc-state"
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.engine = GvisorEngine(self.state)
        self.env = env
        self.agent_dir = agent_dir
        self.bundles: dict[tuple[str, ...], Path] = {}

    def bundle(self, args: Sequence[str], agent: bool) -> Path:
        """``agent``: mount the guest agent like a VM does (a one-shot run mounts none)."""
        key = (*args, str(agent))
        if key not in self.bundles:
            bundle = self.root / f"bundle-{len(self.bundles)}"
            bundle.mkdir(mode=0o700)
            spec = BootSpec(
                sandbox_id="bench",
                environment=self.env,
                workdir=bundle,
                agent_dir=self.agent_dir if agent else None,
            )
            config = oci_config(spec, self.env.rootfs_dir)
            config["process"]["args"] = list(args)
            (bundle / "config.json").write_text(json.dumps(config, indent=1))
            self.bundles[key] = bundle
        return self.bundles[key]

    def run_command(self, bundle: Path, container_id: str, *extra: str) -> list[str]:
        # The exact command line pyro's gVisor engine uses, plus ``extra`` run flags.
        argv = self.engine.run_argv(bundle, container_id)
        cut = argv.index("run") + 1
        return [*argv[:cut], *extra, *argv[cut:]]

    def one_shot(self, args: Sequence[str], agent: bool = False) -> float:
        """Wall time of ``runsc run`` of ``args`` to completion (runsc cleans up itself)."""
        container_id = f"bench-{uuid.uuid4().hex[:12]}"
        try:
            return run_checked(
                self.run_command(self.bundle(args, agent), container_id), what="bare runsc run"
            )
        except BaseException:
            self.force_delete(container_id)
            raise

    @contextlib.contextmanager
    def sleeping(self) -> Iterator[str]:
        """A detached bare container whose entry process sleeps; deleted on exit."""
        container_id = f"bench-{uuid.uuid4().hex[:12]}"
        bundle = self.bundle(["/bin/sleep", "infinity"], agent=True)
        try:
            run_checked(
                self.run_command(bundle, container_id, "--detach"), what="bare runsc run --detach"
            )
            yield container_id
        finally:
            self.force_delete(container_id)

    def exec_command(self, container_id: str, *args: str) -> list[str]:
        return [*self.engine.runsc_base(), "exec", container_id, *args]

    def force_delete(self, container_id: str) -> None:
        force_delete(self.engine.runsc_base(), container_id)


def force_delete(runsc_base: Sequence[str], container_id: str) -> None:
    for action in (["kill", "--all", container_id, "KILL"], ["delete", "--force", container_id]):
        subprocess.run(
            [*runsc_base, *action],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=60,
        )


def sweep_runsc_root(state_root: Path) -> list[str]:
    """Force-delete every container left in a runsc state root; return their ids."""
    if not state_root.is_dir():
        return []
    base = GvisorEngine(state_root).runsc_base()
    proc = subprocess.run(
        [*base, "list", "--quiet"], capture_output=True, text=True, check=False, timeout=30
    )
    ids = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    for container_id in ids:
        force_delete(base, container_id)
    return ids


# -- QEMU -----------------------------------------------------------------------------------
def bare_init_script() -> str:
    """pyro's initramfs init, except that the real root's /bin/sh announces itself on the
    console instead of starting the Python agent."""
    pattern = re.compile(r"^exec busybox switch_root /newroot .*$", re.MULTILINE)
    if not pattern.search(INIT_SCRIPT):
        raise RuntimeError("pyro's INIT_SCRIPT no longer ends in switch_root; update bench")
    replacement = (
        "exec busybox switch_root /newroot /bin/sh -c "
        f"'echo {BARE_MARKER} > /dev/console; exec sleep 600'"
    )
    return pattern.sub(replacement, INIT_SCRIPT)


def bare_qemu_initrd(env: InstalledEnvironment, agent_dir: Path, path: Path) -> Path:
    """The same concatenated initrd pyro boots, plus a last archive that replaces /init."""
    override = CpioWriter()
    override.file("init", bare_init_script().encode(), 0o755)
    with path.open("wb") as out:
        out.write(env.initramfs.read_bytes())
        out.write(agent_initrd(agent_dir).read_bytes())
        out.write(override.finish())
    return path


def bare_qemu_boot(
    engine: QemuEngine,
    env: InstalledEnvironment,
    agent_dir: Path,
    workdir: Path,
    timeout: float = 120,
) -> float:
    """Spawn pyro's QEMU command line, wait for the marker on the serial console, kill it.

    Returns spawn-to-marker-and-dead wall time (the kill is included because pyro's figure
    includes its teardown too).
    """
    workdir.mkdir(parents=True, mode=0o700)
    spec = BootSpec(sandbox_id=workdir.name, environment=env, workdir=workdir, agent_dir=agent_dir)
    initrd = bare_qemu_initrd(env, agent_dir, workdir / "initrd.cpio.gz")
    cmd = engine.command(spec, initrd, workdir / "agent.sock")
    console = workdir / "console.log"
    marker = BARE_MARKER.encode()
    with (workdir / "engine.log").open("ab") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    try:
        while True:
            with contextlib.suppress(FileNotFoundError):
                if marker in console.read_bytes():
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"bare qemu exited early ({proc.returncode}); see {workdir}")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"bare qemu did not reach userspace in {timeout}s")
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return time.perf_counter() - started


def bare_qemu_restore(
    engine: QemuEngine, env: InstalledEnvironment, agent_dir: Path, template: Path, workdir: Path
) -> float:
    """Spawn pyro's QEMU restore command line for ``template``, load the state, `cont`, kill.

    Returns spawn-to-running-and-dead wall time.
    """
    workdir.mkdir(parents=True, mode=0o700)
    spec = BootSpec(sandbox_id=workdir.name, environment=env, workdir=workdir, agent_dir=agent_dir)
    cmd = engine.command(spec, template / "initrd.cpio.gz", workdir / "agent.sock")
    cmd += incoming_argument(template)
    with (workdir / "engine.log").open("ab") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    try:
        qmp = Qmp(workdir / "qmp.sock")
        try:
            resume(qmp)
            status = qmp.execute("query-status").get("status")
            if status != "running":
                raise RuntimeError(f"bare qemu restore ended {status!r}; see {workdir}")
        finally:
            qmp.close()
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return time.perf_counter() - started


# -- leftovers ------------------------------------------------------------------------------
def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Processes whose command line contains ``text`` (our private temp directory)."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append((int(entry.name), cmdline.strip()[:160]))
    return found


def kill_leftovers(text: str) -> list[tuple[int, str]]:
    """SIGKILL processes that mention our temp dir (they can only be ours); return them."""
    leftovers = processes_mentioning(text)
    for pid, _ in leftovers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return leftovers


def foreign_sandbox_processes(ours: str) -> int:
    """How many runsc/qemu processes that are not ours are running (noise for the figures)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        first = cmdline.split(b"\0", 1)[0]
        if first.endswith((b"runsc", b"qemu-system-x86_64")) and ours.encode() not in cmdline:
            count += 1
    return count


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- checkpoints inside pyro (for --profile) --------------------------------------------------
class Checkpoints:
    """Wrap functions for a while and add up the wall time spent in each, per run."""

    def __init__(self, targets: Sequence[tuple[Any, str, str]]) -> None:
        self.targets = targets  # (owner: class or module, attribute, label)
        self.runs: list[dict[str, float]] = []
        self.current: dict[str, float] = {}
        self.missing: list[str] = []

    def _wrap(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self.current[label] = self.current.get(label, 0.0) + elapsed

        return wrapper

    @contextlib.contextmanager
    def installed(self) -> Iterator[Checkpoints]:
        saved = []
        try:
            for owner, attr, label in self.targets:
                original = vars(owner).get(attr)
                if original is None:  # pyro changed shape: skip, and say so in the report
                    self.missing.append(label)
                    continue
                saved.append((owner, attr, original))
                if isinstance(original, staticmethod):
                    setattr(owner, attr, staticmethod(self._wrap(original.__func__, label)))
                else:
                    setattr(owner, attr, self._wrap(original, label))
            yield self
        finally:
            for owner, attr, original in reversed(saved):
                setattr(owner, attr, original)

    def run(self, fn: Callable[[], Any]) -> Any:
        self.current = {}
        started = time.perf_counter()
        try:
            return fn()
        finally:
            self.current["total"] = time.perf_counter() - started
            self.runs.append(self.current)

    def median(self, label: str) -> float:
        return statistics.median(run.get(label, 0.0) for run in self.runs)


@contextlib.contextmanager
def bytecode_cached(workdir: Path, as_is: bool) -> Iterator[None]:
    """Every process the bench spawns (CLI runs, supervisors, MCP servers) caches its
    bytecode in a private directory, as users' Pythons do: some shells (CI, this project's
    own machines) set PYTHONDONTWRITEBYTECODE=1, which makes each supervisor's start compile
    pyro_mcp from source. ``as_is``: this shell's environment, untouched."""
    saved = dict(os.environ)
    if not as_is:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
