"""A one-shot command on gVisor without the guest agent: the command itself is the
container's entry process, its stdout/stderr are our pipes, its exit code is runsc's.

`pyro run` needs nothing the agent offers beyond exec, and starting Python in the sandbox
is most of what a one-shot run costs; this path is a bare `runsc run` plus bookkeeping.
Same guarantees as the agent's exec: streamed output, bounded capture, and on timeout every
process in the sandbox is killed, the output so far kept, exit code 124.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import SandboxError
from ..guest.execution import CHUNK, DEFAULT_MAX_OUTPUT, Capture, base_env, shell_status
from .base import BootSpec
from .gvisor import GvisorEngine, oci_config
from .gvisor_cgroups import CgroupWatch, HostCgroups

Emit = Callable[[str, bytes], None]
RUNSC_FAILED = 128  # runsc's exit code when it fails itself (a command may return it too)


def run_once(
    engine: GvisorEngine,
    spec: BootSpec,
    command: str,
    timeout: float,
    cwd: str = "/root",
    on_output: Emit | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> dict[str, Any]:
    container_id = f"pyro-{spec.sandbox_id}"
    log = spec.workdir / "runsc.log"
    cmd = _prepare(engine, spec, command, cwd, container_id, log)
    started = time.monotonic()
    cgroups = HostCgroups(container_id, spec.mem_mib, spec.vcpu_count)
    proc = engine.launch(
        cmd, cgroups, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    captures = {"stdout": Capture(max_output), "stderr": Capture(max_output)}
    timed_out = threading.Event()
    backstop = CgroupWatch(cgroups)

    def expire() -> None:
        timed_out.set()
        subprocess.run(
            [*engine.runsc_base(), "kill", "--all", container_id, "KILL"],
            capture_output=True,
            check=False,
            timeout=30,
        )

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        _pump(proc, captures, on_output)
        code = proc.wait()
        backstop.check()  # before the cgroups go
    except BaseException:
        expire()
        proc.kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
        if timed_out.is_set() or _left_behind(engine, container_id):
            engine.destroy(container_id)  # its runsc state and host cgroups
        else:
            cgroups.remove()
    if code == RUNSC_FAILED and not timed_out.is_set():
        failure = _runsc_failure(log)
        if failure is not None:
            raise SandboxError(f"gVisor could not run the command: {failure}")
    limit = backstop.reason(code, spec.mem_mib)
    if limit is not None and not timed_out.is_set():
        raise SandboxError(f"the sandbox went over its {limit} and was ended")
    expired = timeout if timed_out.is_set() else None
    return _result(code, expired, started, captures, on_output)


def _result(
    code: int,
    timed_out: float | None,
    started: float,
    captures: dict[str, Capture],
    on_output: Emit | None,
) -> dict[str, Any]:
    """The run's result; ``timed_out`` is the timeout when the command ran out of time."""
    if timed_out is not None:
        code = 124
        note = f"command timed out after {timed_out:g}s\n".encode()
        captures["stderr"].add(note)
        if on_output is not None:
            on_output("stderr", note)
    result: dict[str, Any] = {
        "exit_code": shell_status(code),
        "duration_ms": int((time.monotonic() - started) * 1000),
        "timed_out": timed_out is not None,
    }
    for name, cap in captures.items():
        result[name] = cap.text()
        result[f"{name}_truncated"] = cap.dropped > 0
    return result


def _prepare(
    engine: GvisorEngine, spec: BootSpec, command: str, cwd: str, container_id: str, log: Path
) -> list[str]:
    """Write the bundle; the `runsc run` command line for it.

    runsc's own log goes to ``log``: an error there (with exit 128) is runsc failing, which
    the command cannot fake, whatever it prints or returns.
    """
    engine.state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    bundle = spec.workdir / "bundle"
    bundle.mkdir(parents=True, exist_ok=True)
    config = oci_config(spec, spec.environment.rootfs_dir)
    env = base_env({"PYRO_UID": "0"})
    config["process"].update(
        args=["/bin/sh", "-lc", command], cwd=cwd, env=[f"{k}={v}" for k, v in env.items()]
    )
    (bundle / "config.json").write_text(json.dumps(config))
    argv = engine.run_argv(bundle, container_id)
    return [argv[0], f"--log={log}", *argv[1:]]


def _runsc_failure(log: Path) -> str | None:
    """runsc's own fatal error (it writes ``{"msg", "level": "error"}`` to its --log file
    when it fails), or None."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") == "error":
            return " ".join(str(entry.get("msg") or "runsc failed").split())[:500]
    return None


def _left_behind(engine: GvisorEngine, container_id: str) -> bool:
    """runsc left state for the container (it was killed, or failed): a command's non-zero
    exit is no reason for an extra `runsc delete`, which costs a runsc start."""
    try:
        return any(container_id in name for name in os.listdir(engine.state_root))
    except OSError:
        return True


def _pump(
    proc: subprocess.Popen[bytes], captures: dict[str, Capture], on_output: Emit | None
) -> None:
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        sel.register(pipe, selectors.EVENT_READ, name)
    while sel.get_map():
        for key, _ in sel.select():
            chunk = os.read(key.fd, CHUNK)
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            captures[key.data].add(chunk)
            if on_output is not None:
                on_output(key.data, chunk)
    sel.close()
