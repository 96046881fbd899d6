"""Speed figures for pyro-mcp beside the bare engine, both measured in the same run.

    uv run --frozen python scripts/bench.py [--runs 10] [--qemu-runs 3] [--exec-runs 50]
                                            [--only gvisor|qemu|exec|workspace|mcp|network
                                                    |suspend|snapshot ...]
                                            [--profile] [--as-is]

Figures (each printed with its ratio to the bare engine):
  gvisor   one-shot `pyro run debian:12 --engine gvisor -- true` through the installed console
           script, served by the warm CLI helper as every command after a first one is (the
           run fails if the helper did not serve them all), and with no helper (interpreter
           start-up and imports included), and through the SDK in-process, versus bare
           `runsc run` of /bin/true with pyro's own OCI config and runsc flags.
  qemu     QEMU start to first result (`run_in_vm ... true`): from pyro's boot template, versus
           bare QEMU restoring that same saved state; and a true cold boot, versus the same QEMU
           command line, kernel and initrd booting to a shell in the real root (section_qemu).
  exec     warm `true` round trip on started gVisor VMs (manager.vms.exec, spread over 3),
           calls back to back (no shell is started ahead between such calls), versus
           `runsc exec <container> /bin/true` on a sleeping bare container.
  workspace, mcp, network, suspend, snapshot: see bench_workspaces.py, bench_mcp.py,
           bench_network.py, bench_suspend.py (QEMU stop --suspend and resume beside a plain
           boot) and bench_snapshots.py (full snapshots and fork).

--profile adds where the time goes: checkpoints inside pyro (wrapped functions, medians of
extra runs), bare runsc runs of the pieces pyro adds (python3, the agent's imports, a login
shell), host-side start-up of the CLI, and the in-guest cost of spawning a process.

Runs of pyro and of the bare engine are interleaved so background load hits both alike (the
millisecond exec figures alternate in blocks of 25, see bench_support.alternate_blocks); one
untimed warm-up of each comes first. Everything runs under a private temporary PYRO_HOME and
runsc state root; every sandbox is deleted in a finally block, and at the end any process whose
command line mentions that temporary directory is reported and killed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_support import (
    BareRunsc,
    Checkpoints,
    HostIdle,
    Stats,
    alternate_blocks,
    bare_qemu_boot,
    bare_qemu_restore,
    bytecode_cached,
    foreign_sandbox_processes,
    kill_leftovers,
    processes_mentioning,
    remove_tree,
    run_checked,
    sweep_runsc_root,
    timed,
    wait_for,
)

from pyro_mcp import Pyro
from pyro_mcp.engines import base as engine_base
from pyro_mcp.engines import gvisor as gvisor_engine
from pyro_mcp.engines import qemu as qemu_engine
from pyro_mcp.engines import templates as qemu_templates
from pyro_mcp.engines.base import BootSpec
from pyro_mcp.engines.qemu import QemuEngine, agent_initrd
from pyro_mcp.engines.templates import is_ready, template_path
from pyro_mcp.runtime import Runtime
from pyro_mcp.vms import VmRegistry

ENVIRONMENT = "debian:12"
GVISOR_TARGET_RATIO = 1.5
QEMU_TARGET_SECONDS = 3.5
EXEC_TARGET_MS = 15.0
EXEC_VMS = 3  # the exec figure's calls are spread over this many fresh VMs
SECTIONS = ("gvisor", "qemu", "exec", "workspace", "mcp", "network", "suspend", "snapshot")


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.home = workdir / "home"  # private PYRO_HOME: its runsc root holds only our sandboxes
        self.bin_dir = Path(sys.executable).parent
        self.cli = self.bin_dir / "pyro"
        runtime = Runtime(engine="gvisor", home=self.home)
        self.env = runtime.environment(ENVIRONMENT)
        self.agent_dir = runtime.agent_dir()

    def pyro(self, engine: str) -> Pyro:
        return Pyro(backend_name=engine, base_dir=self.home)

    def cli_env(self, bytecode_cache: bool = True) -> dict[str, str]:
        """The environment for CLI subprocesses.

        Users' Pythons cache bytecode, but some shells (CI, this project's own machines) set
        PYTHONDONTWRITEBYTECODE=1, which makes every `pyro` start compile pyro_mcp from source
        (~50 ms here). By default CLI runs get a private bytecode cache (PYTHONPYCACHEPREFIX,
        filled by the warm-up run) so they measure the steady state users see; --as-is keeps
        the caller's environment untouched.
        """
        env = {**os.environ, "PYRO_HOME": str(self.home)}
        if not bytecode_cache:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            env.pop("PYTHONPYCACHEPREFIX", None)
        elif not self.args.as_is:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.workdir / "pycache")
        return env

    # -- 1. gVisor one-shot -----------------------------------------------------------------
    def section_gvisor(self) -> None:
        runs = self.args.runs
        print(f"\n== gVisor one-shot: `true` in {ENVIRONMENT} ({runs} interleaved runs each) ==")
        bare = BareRunsc(self.workdir / "bare-gvisor", self.env, self.agent_dir)
        cli_cmd = [str(self.cli), "run", ENVIRONMENT, "--engine", "gvisor", "--", "true"]
        cli_env = self.cli_env()
        cold_env = {**cli_env, "PYRO_CLI_HELPER": "0"}
        if not self.args.as_is:
            cli_env["PYRO_CLI_HELPER"] = "1"
        samples: dict[str, list[float]] = {"bare": [], "cli": [], "cli-cold": [], "sdk": []}
        try:
            with self.pyro("gvisor") as pyro:

                def sdk_run() -> float:
                    elapsed, result = timed(
                        lambda: pyro.run_in_vm(environment=ENVIRONMENT, command="true")
                    )
                    if result["exit_code"] != 0 or result["engine"] != "gvisor":
                        raise RuntimeError(f"unexpected SDK result: {result}")
                    return elapsed

                steps: dict[str, Callable[[], float]] = {
                    "bare": lambda: bare.one_shot(["/bin/true"]),
                    "cli": lambda: run_checked(cli_cmd, env=cli_env, what="pyro run"),
                    "cli-cold": lambda: run_checked(cli_cmd, env=cold_env, what="pyro run"),
                    "sdk": sdk_run,
                }
                for step in steps.values():  # warm-up: page cache, .pyc files, CLI helper
                    step()
                helper = cli_env.get("PYRO_CLI_HELPER", "1") != "0"
                if helper:
                    wait_for((self.home / "cli-helper.sock").exists, 10)
                helpers = self.cli_helpers()
                for _ in range(runs):
                    for name, step in steps.items():
                        samples[name].append(step())
                if helper and (not helpers or self.cli_helpers() != helpers):
                    raise RuntimeError("the CLI helper did not serve every timed CLI run")
                self.report_gvisor(samples)
                if self.args.profile:
                    self.profile_gvisor(pyro, bare)
        finally:
            sweep_runsc_root(bare.state)
            for pid in self.cli_helpers():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    def cli_helpers(self) -> list[int]:
        found = processes_mentioning(f"--home {self.home}")
        return sorted(pid for pid, line in found if "pyro_mcp.cli.helper" in line)

    def report_gvisor(self, samples: dict[str, list[float]]) -> None:
        base = Stats(samples["bare"])
        for label, key in (("CLI, warm helper", "cli"), ("SDK", "sdk")):
            stats = Stats(samples[key])
            ratio = stats.median / base.median
            print(
                f"gvisor one-shot ({label}): median {stats.median:.3f} s "
                f"(min {stats.low:.3f}, max {stats.high:.3f})  bare runsc: {base.median:.3f} s  "
                f"ratio {ratio:.2f}  (target <= {GVISOR_TARGET_RATIO}: "
                f"{verdict(ratio <= GVISOR_TARGET_RATIO)})"
            )
        cold = Stats(samples["cli-cold"])
        print(
            f"  CLI when no helper runs (the first command, or PYRO_CLI_HELPER=0): median "
            f"{cold.median:.3f} s, ratio {cold.median / base.median:.2f} (Python's start-up "
            "and imports: see --profile)"
        )
        print(f"  bare = `runsc run` of /bin/true, pyro's OCI config and flags: {base.seconds()}")
        if not self.args.as_is and os.environ.get("PYTHONDONTWRITEBYTECODE"):
            print("  note: PYTHONDONTWRITEBYTECODE is set here; CLI runs used a private bytecode")
            print("        cache (the steady state users see); --as-is measures without it")

    def profile_gvisor(self, pyro: Pyro, bare: BareRunsc) -> None:
        """Where pyro's time goes: checkpoints inside the SDK, and bare pieces of the same."""
        n = max(3, self.args.runs // 2)
        print(f"\n-- profile (medians of {n} extra runs each) --")
        self.checkpoint_profile(
            pyro,
            n,
            [
                (VmRegistry, "create", "create: validate, environment, engine choice"),
                (Runtime, "environment", "  environment lookup (manifest read)"),
                (Runtime, "agent_dir", "  agent staging hash (create + start)"),
                (VmRegistry, "start", "start: boot + agent hello"),
                (gvisor_engine.GvisorEngine, "boot", "  GvisorEngine.boot"),
                (gvisor_engine, "wait_hello", "    runsc spawned -> agent hello"),
                (VmRegistry, "exec", "exec: `sh -lc true` through the agent"),
                (VmRegistry, "delete", "delete: stop sandbox, remove workdir"),
                (engine_base.Sandbox, "kill", "  Sandbox.kill (EOF, wait for runsc)"),
            ],
        )

        def bare_ms(args: list[str]) -> float:
            return statistics.median(bare.one_shot(args, agent=True) for _ in range(n)) * 1000

        # The agent runs commands with PYRO_UID set, which spares /etc/profile two `id -u`
        # processes; the bare login shell gets it too, or it would look ~140 ms slower.
        login = ["/usr/bin/env", "PYRO_UID=0", "/bin/sh", "-lc", "true"]
        py = ["/usr/bin/python3", "-S", "-B", "-c"]

        true_ms = bare_ms(["/bin/true"])
        print("bare `runsc run` of ... (same config; delta to /bin/true)")
        print(f"  {'/bin/true':<45} {true_ms:7.1f} ms")
        for label, argv in (
            ("env PYRO_UID=0 /bin/sh -lc true", login),
            ("python3 -S -B -c pass", [*py, "pass"]),
            ("python3 ... -c 'import pyro_guest.agent'", [*py, "import pyro_guest.agent"]),
        ):
            ms = bare_ms(argv)
            print(f"  {label:<45} {ms:7.1f} ms  (+{ms - true_ms:.1f})")
        python = str(self.bin_dir / "python")
        print("host-side CLI start-up (subprocess wall time)")
        for label, cmd in (
            ("python -S -c pass", [python, "-S", "-c", "pass"]),
            ("python -c pass (site, .pth files)", [python, "-c", "pass"]),
            ("python -c 'import pyro_mcp.cli'", [python, "-c", "import pyro_mcp.cli"]),
            ("pyro --version (imports + argparse tree)", [str(self.cli), "--version"]),
        ):
            ms = statistics.median(
                run_checked(cmd, env=self.cli_env(), what=label) for _ in range(n)
            )
            print(f"  {label:<45} {ms * 1000:7.1f} ms")
        cmd = [python, "-c", "import pyro_mcp.cli"]
        env = self.cli_env(bytecode_cache=False)
        ms = statistics.median(run_checked(cmd, env=env, what="import") for _ in range(n))
        print(f"  {'  same, no bytecode cache (compiles pyro_mcp)':<45} {ms * 1000:7.1f} ms")
        elapsed, _ = timed(lambda: self.pyro("gvisor").close())
        print(f"  {'Pyro() construction + close':<45} {elapsed * 1000:7.1f} ms")

    @staticmethod
    def checkpoint_profile(pyro: Pyro, n: int, targets: list[tuple[Any, str, str]]) -> None:
        """Median wall time spent in each of ``targets`` over ``n`` run_in_vm calls."""
        checkpoints = Checkpoints(targets)
        with checkpoints.installed():
            for _ in range(n):
                checkpoints.run(lambda: pyro.run_in_vm(environment=ENVIRONMENT, command="true"))
        print(f"SDK run_in_vm total {checkpoints.median('total') * 1000:7.1f} ms")
        for _, _, label in targets:
            if label not in checkpoints.missing:
                print(f"  {label:<45} {checkpoints.median(label) * 1000:7.1f} ms")
        if checkpoints.missing:
            print(f"  (not found in this pyro, skipped: {', '.join(checkpoints.missing)})")

    # -- 2. QEMU cold start -----------------------------------------------------------------
    def section_qemu(self) -> None:
        """QEMU start to first result, two ways, each beside its bare counterpart.

        1. As users get it: QemuEngine resumes a saved, booted, idle VM (a boot template in
           the cache, made by the first cold boot of this configuration; the warm-up run makes
           it if it is missing). Bare: the same QEMU restore command line (QemuEngine.command
           + `-incoming` from that template's state file), waited on over QMP until the state
           is loaded, then `cont`, then killed. pyro adds: agent socket, hello, exec of
           `sh -lc true` in the guest, teardown.
        2. A true cold boot (PYRO_VM_TEMPLATES=0): what every run cost before templates, and
           still the first run of a new configuration. Bare: QemuEngine.command's exact command
           line, kernel and initrd (environment initramfs + agent archive), plus one last
           archive that replaces /init with pyro's own init script changed in its last line
           only: after the virtio modules, the ext4 image with its overlay and switch_root,
           the real root's /bin/sh writes a marker to the serial console instead of starting
           the Python agent. Timed from spawn until the marker is in console.log, plus killing
           QEMU. pyro adds: Python start-up and the agent under TCG, hello, exec, plumbing.
        """
        runs = self.args.qemu_runs
        print(f"\n== QEMU start to first result ({runs} interleaved runs each) ==")
        with self.pyro("qemu") as pyro:
            runtime = pyro.manager.runtime
            choice = runtime.choose_engine(self.env, allow_host_compat=False)  # probes, cached
            engine = choice.engine
            if not isinstance(engine, QemuEngine):
                raise RuntimeError(f"--engine qemu chose {choice.key}")
            agent_initrd(self.agent_dir)
            counter = iter(range(1_000_000))

            def scratch() -> Path:
                return self.workdir / f"qemu-bare-{next(counter)}"

            def sdk_run(p: Pyro = pyro) -> float:
                elapsed, result = timed(
                    lambda: p.run_in_vm(environment=ENVIRONMENT, command="true")
                )
                if result["exit_code"] != 0 or result["engine"] != choice.key:
                    raise RuntimeError(f"unexpected SDK result: {result}")
                return elapsed

            agent_dir = runtime.agent_dir()  # pyro's, as of now: the template key depends on it
            template = self.qemu_template(engine, agent_dir)
            if template is not None:
                existed = is_ready(template)
                sdk_run()  # warm-up; boots cold and saves the template if there is none
                if not is_ready(template):
                    raise RuntimeError(f"pyro did not leave a boot template at {template}")
                steps: dict[str, Callable[[], float]] = {
                    "bare": lambda: bare_qemu_restore(
                        engine, self.env, agent_dir, template, scratch()
                    ),
                    "sdk": sdk_run,
                }
                samples = self.interleave(steps, runs)
                if runtime.agent_dir() != agent_dir:
                    print(
                        "  WARNING: the guest agent's sources changed during this measurement, so"
                        " pyro cold-booted new templates; the figures below mix in cold boots"
                    )
                made = "existed" if existed else "made by the warm-up run"
                self.report_qemu(
                    f"{choice.key} start to first result (SDK, boot template)",
                    samples,
                    "bare qemu restore",
                    f"bare = the same QEMU command line + -incoming from pyro's template ({made}),"
                    " state loaded and `cont` over QMP, then killed",
                )
                if self.args.profile:
                    n = max(3, runs)
                    print(f"\n-- profile of the template path (medians of {n} extra runs) --")
                    self.checkpoint_profile(
                        pyro,
                        n,
                        [
                            (VmRegistry, "create", "create"),
                            (VmRegistry, "start", "start: restore + agent hello"),
                            (QemuEngine, "_spawn", "  spawn qemu -incoming"),
                            (QemuEngine, "_connect", "  connect the agent socket"),
                            (qemu_templates, "resume", "  QMP: wait for state loaded, cont"),
                            (qemu_engine, "wait_hello", "  agent hello"),
                            (VmRegistry, "exec", "exec: `sh -lc true` through the agent"),
                            (VmRegistry, "delete", "delete: kill qemu, remove workdir"),
                        ],
                    )
                    print()
            else:
                print("  (boot templates are disabled or gone; only the cold boot is measured)")
        saved = os.environ.get("PYRO_VM_TEMPLATES")
        os.environ["PYRO_VM_TEMPLATES"] = "0"  # read when the engines are constructed
        try:
            cold = self.pyro("qemu")
            for key in ("qemu-kvm", "qemu-tcg"):  # construct them now (they are lazy)
                cold.manager.runtime.selector.engine(key)
        finally:
            if saved is None:
                os.environ.pop("PYRO_VM_TEMPLATES", None)
            else:
                os.environ["PYRO_VM_TEMPLATES"] = saved
        with cold:
            cold_steps: dict[str, Callable[[], float]] = {
                "bare": lambda: bare_qemu_boot(engine, self.env, self.agent_dir, scratch()),
                "sdk": lambda: sdk_run(cold),
            }
            for step in cold_steps.values():  # warm-up
                step()
            samples = self.interleave(cold_steps, runs)
        self.report_qemu(
            f"{choice.key} cold boot to first result (SDK, PYRO_VM_TEMPLATES=0)",
            samples,
            "bare qemu boot to shell",
            "bare = same qemu command line, kernel and initrd; pyro's /init up to switch_root,"
            " then /bin/sh marks the console instead of starting the agent",
            target=False,
        )

    @staticmethod
    def interleave(steps: dict[str, Callable[[], float]], runs: int) -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(runs):
            for name, step in steps.items():
                samples[name].append(step())
        return samples

    def qemu_template(self, engine: QemuEngine, agent_dir: Path) -> Path | None:
        """Where pyro keeps the boot template for run_in_vm's configuration, if it uses one."""
        if engine.template_root is None:
            return None
        spec = BootSpec(
            sandbox_id="bench",
            environment=self.env,
            workdir=self.workdir,
            agent_dir=agent_dir,
        )  # run_in_vm's defaults: 1 vCPU, 1024 MiB, no network, no workspace disk
        key = engine._template_key(spec)
        return None if key is None else template_path(engine.template_root, key)

    @staticmethod
    def report_qemu(
        title: str, samples: dict[str, list[float]], bare_name: str, how: str, target: bool = True
    ) -> None:
        """``target``: the start-to-first-result target applies (a new VM from the boot
        template); a true cold boot is shown for information (bare QEMU alone takes longer
        than the target here)."""
        base, stats = Stats(samples["bare"]), Stats(samples["sdk"])
        goal = (
            f"target <= {QEMU_TARGET_SECONDS} s: {verdict(stats.median <= QEMU_TARGET_SECONDS)}"
            if target
            else "information: the first boot of a configuration, which makes the template"
        )
        print(
            f"{title}: median {stats.median:.2f} s (min {stats.low:.2f}, max {stats.high:.2f})  "
            f"{bare_name}: {base.median:.2f} s  ratio {stats.median / base.median:.2f}  ({goal})"
        )
        print(f"  {how}: {base.seconds()}")

    # -- 4. workspaces (bench_workspaces.py) -------------------------------------------------
    def section_workspace(self) -> None:
        from bench_workspaces import section_workspace

        section_workspace(self)

    # -- 4b. the same exec through MCP, beside the SDK (bench_mcp.py) -----------------------
    def section_mcp(self) -> None:
        from bench_mcp import section_mcp

        section_mcp(self)

    # -- 5. gVisor networking (bench_network.py) ---------------------------------------------
    def section_network(self) -> None:
        from bench_network import section_network

        section_network(self)

    # -- 6. QEMU suspend and resume (bench_suspend.py) ---------------------------------------
    def section_suspend(self) -> None:
        from bench_suspend import section_suspend

        section_suspend(self)

    # -- 7. full snapshots and fork (bench_snapshots.py) -------------------------------------
    def section_snapshot(self) -> None:
        from bench_snapshots import section_snapshot

        section_snapshot(self)

    # -- 3. warm exec round trip ------------------------------------------------------------
    def section_exec(self) -> None:
        runs = self.args.exec_runs
        print(
            f"\n== warm exec round trip on gVisor: `true` ({runs} calls each, back to back, "
            f"blocks of 25, spread over {EXEC_VMS} VMs) =="
        )
        bare = BareRunsc(self.workdir / "bare-exec", self.env, self.agent_dir)
        pyro_s: list[float] = []
        bare_s: list[float] = []
        guest_ms: list[int] = []
        per_vm: list[float] = []
        idle = HostIdle()
        floor = ""
        try:
            with self.pyro("gvisor") as pyro, bare.sleeping() as container:
                bare_cmd = bare.exec_command(container, "/bin/true")
                count = min(EXEC_VMS, runs)  # every VM gets calls (--exec-runs 1 or 2)
                for index in range(count):
                    share = runs // count + (1 if index < runs % count else 0)
                    mine, theirs, profiled = self.exec_on_one_vm(
                        pyro, bare_cmd, share, guest_ms, idle, profile=index == 0
                    )
                    floor = floor or profiled
                    pyro_s += mine
                    bare_s += theirs
                    per_vm.append(statistics.median(mine) * 1000)
        finally:
            sweep_runsc_root(bare.state)
        stats, base = Stats(pyro_s), Stats(bare_s)
        median_ms = stats.median * 1000
        print(
            f"gvisor warm exec (SDK manager.vms.exec): median {median_ms:.1f} ms, "
            f"p90 {stats.p90 * 1000:.1f} ms  bare runsc exec: {base.median * 1000:.1f} ms  "
            f"ratio {stats.median / base.median:.2f}  "
            f"(target <= {EXEC_TARGET_MS:.0f} ms: {verdict(median_ms <= EXEC_TARGET_MS)})"
        )
        print(
            f"  pyro: {stats.millis()}; in-guest duration_ms median "
            f"{statistics.median(guest_ms):.0f}; {idle.describe()}"
        )
        print(
            "  median of each VM (a sandbox's exec speed varies from one to the next): "
            + ", ".join(f"{ms:.1f}" for ms in per_vm)
            + " ms"
        )
        print(
            f"  bare = `runsc exec <sleeping container> /bin/true` (a new runsc process per "
            f"call): {base.millis()}"
        )
        if floor:
            print("  -- profile: what spawning costs inside this gVisor sandbox (Python, 20 runs)")
            print(floor)

    def exec_on_one_vm(
        self,
        pyro: Pyro,
        bare_cmd: list[str],
        runs: int,
        guest_ms: list[int],
        idle: HostIdle,
        profile: bool,
    ) -> tuple[list[float], list[float], str]:
        """``runs`` back-to-back execs on a fresh VM, alternating in blocks with bare runsc."""
        vm_id = pyro.create_vm(environment=ENVIRONMENT)["vm_id"]
        try:
            pyro.start_vm(vm_id)
            vms = pyro.manager.vms
            timed_ms: list[int] = []

            def pyro_exec() -> float:
                elapsed, result = timed(lambda: vms.exec(vms.get(vm_id), "true", 30))
                if result["exit_code"] != 0:
                    raise RuntimeError(f"unexpected exec result: {result}")
                timed_ms.append(int(result["duration_ms"]))
                return elapsed

            for _ in range(3):  # warm-up
                pyro_exec()
                run_checked(bare_cmd, what="runsc exec")
            timed_ms.clear()
            mine, theirs = alternate_blocks(
                lambda: idle.measure(pyro_exec),
                lambda: run_checked(bare_cmd, what="runsc exec"),
                runs,
            )
            guest_ms += timed_ms
            floor = self.spawn_floor(vms, vm_id) if self.args.profile and profile else ""
            return mine, theirs, floor
        finally:
            pyro.delete_vm(vm_id)

    @staticmethod
    def spawn_floor(vms: VmRegistry, vm_id: str) -> str:
        """The agent runs each command as a child process: time that alone, in the guest."""
        code = (
            "import subprocess as s, time\n"
            "env = {'PATH': '/usr/bin:/bin', 'PYRO_UID': '0'}\n"
            "def t(label, args, **kw):\n"
            "    s.run(args, **kw)\n"
            "    start = time.monotonic()\n"
            "    for _ in range(20): s.run(args, **kw)\n"
            "    print(f'    {label:<43} {(time.monotonic() - start) * 50:7.1f} ms')\n"
            "t('subprocess.run([\"/bin/true\"])', ['/bin/true'])\n"
            "t('subprocess.run(sh -c true)', ['/bin/sh', '-c', 'true'])\n"
            "t('... sh -lc true, new session, pipes (= agent)', ['/bin/sh', '-lc', 'true'],\n"
            "  env=env, start_new_session=True, capture_output=True)\n"
        )
        result = vms.exec(vms.get(vm_id), f"python3 -S -c {shlex.quote(code)}", 120)
        return str(result["stdout"]).rstrip() or str(result["stderr"]).rstrip()


def describe_host(workdir: Path) -> None:
    exe = Path(sys.executable)
    real = exe.resolve()
    shim = " (a pyenv SHIM: adds start-up time!)" if "shims" in real.parts else ""
    print(f"python: {exe} -> {real}{shim}")
    print(f"        {platform.python_implementation()} {platform.python_version()}")
    cli = exe.parent / "pyro"
    if cli.exists():
        shebang = cli.read_text(errors="replace").splitlines()[0]
        print(f"pyro CLI: {cli} ({shebang})")
    for tool in ("runsc", "qemu-system-x86_64"):
        print(f"{tool}: {shutil.which(tool) or 'not found'}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"cpus: {os.cpu_count()}  load average: {load}")
    others = foreign_sandbox_processes(str(workdir))
    if others:
        print(f"note: {others} other runsc/qemu processes are running; figures may be noisy")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="gVisor one-shot runs (default 10)")
    parser.add_argument("--qemu-runs", type=int, default=3, help="QEMU cold starts (default 3)")
    parser.add_argument("--exec-runs", type=int, default=50, help="warm exec calls (default 50)")
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run only this section (repeatable; default: all)",
    )
    parser.add_argument(
        "--as-is",
        action="store_true",
        help="run the CLI with this shell's environment even if it disables bytecode caching",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also break down where the time goes (extra runs; see the module docstring)",
    )
    args = parser.parse_args(argv)
    for name in ("runs", "qemu_runs", "exec_runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwind through every finally block


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="pyro-bench-"))  # mode 0700
    describe_host(workdir)
    started = time.monotonic()
    status = 0
    try:
        bench = Bench(args, workdir)
        with bytecode_cached(workdir, args.as_is):
            for name in args.only or SECTIONS:
                getattr(bench, f"section_{name}")()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        status = 130
    except SystemExit as exc:  # SIGTERM / SIGHUP, see _terminate
        print(f"\nterminated (exit {exc.code})", file=sys.stderr)
        status = int(exc.code or 1)
    except Exception:
        traceback.print_exc()
        status = 1
    finally:
        swept = sweep_runsc_root(workdir / "home" / "runtime" / "runsc")
        leftovers = kill_leftovers(str(workdir))
        if swept or leftovers:
            print(f"\ncleanup: force-deleted {swept}; killed leftover processes {leftovers}")
        time.sleep(0.2 if leftovers else 0)
        remaining = processes_mentioning(str(workdir))
        remove_tree(workdir)
        left = f"STILL RUNNING: {remaining}" if remaining else "no processes left behind"
        print(f"\n(bench took {time.monotonic() - started:.0f} s; {left})")
        if remaining:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
