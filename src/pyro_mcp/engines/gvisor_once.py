"""What only a gVisor one-shot run does (``GvisorEngine.run_once``): the command itself is the
container's entry process, its stdout/stderr are our pipes, its exit code is runsc's.

The sandbox is prepared, started and cleaned up by the engine exactly as for an agent
(``GvisorEngine.launch``/``release``); this module pumps the output, keeps the timeout and
tells runsc failing from the command failing. Same guarantees as the agent's exec: streamed
output, bounded capture, and on timeout every process in the sandbox is killed, the output
so far kept, exit code 124; a cancelled call (calls.py) kills them the same way, exit 130.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import calls
from ..errors import SandboxError
from ..guest.execution import (
    CHUNK,
    DEFAULT_MAX_OUTPUT,
    Capture,
    base_env,
    finish,
    mark_cancelled,
)
from .base import BootSpec, Emit
from .gvisor_cgroups import CgroupWatch

if TYPE_CHECKING:
    from .gvisor import GvisorEngine, Launched

KILL_WAIT_SECONDS = 10.0
KILL_RETRY_SECONDS = 0.05
RUNSC_FAILED = 128  # runsc's exit code when it fails itself (a command may return it too)


class OneShot:
    def __init__(
        self,
        engine: GvisorEngine,
        spec: BootSpec,
        on_output: Emit | None,
        max_output: int = DEFAULT_MAX_OUTPUT,
    ) -> None:
        self.engine = engine
        self.spec = spec
        self.on_output = on_output
        self.captures = {"stdout": Capture(max_output), "stderr": Capture(max_output)}
        self.timed_out = threading.Event()
        self.cancelled = threading.Event()  # the surface's call was cancelled (calls.py)
        # runsc's own log: an error there (with exit 128) is runsc failing, which the
        # command cannot fake, whatever it prints or returns.
        self.log = spec.workdir / "runsc.log"

    def run(self, command: str, timeout: float, cwd: str) -> dict[str, Any]:
        started = time.monotonic()
        env = base_env({"PYRO_UID": "0"})
        process = {
            "args": ["/bin/sh", "-lc", command],
            "cwd": cwd,
            "env": [f"{k}={v}" for k, v in env.items()],
        }
        launched = self.engine.launch(
            self.spec,
            process=process,
            log=self.log,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        code, limit = self._wait(launched, timeout)
        expired = self.timed_out.is_set()
        if code == RUNSC_FAILED and not expired:
            failure = runsc_failure(self.log)
            if failure is not None:
                raise SandboxError(f"gVisor could not run the command: {failure}")
        if limit is not None and not expired:
            raise SandboxError(f"the sandbox went over its {limit} and was ended")
        ran_out = timeout if expired and not self.cancelled.is_set() else None
        result = finish(code, started, ran_out, self._take)
        if self.cancelled.is_set():
            mark_cancelled(result, self._take)
        for name, cap in self.captures.items():
            result[name] = cap.text()
            result[f"{name}_truncated"] = cap.dropped > 0
        return result

    def _wait(self, launched: Launched, timeout: float) -> tuple[int, str | None]:
        """Pump the output until the sandbox ends; its exit code and the host limit that
        ended it, if one did (read before the engine removes the cgroups)."""
        proc = launched.process
        backstop = CgroupWatch(launched.cgroups)
        timer = threading.Timer(timeout, self._expire, args=(launched,))
        timer.start()
        clean = False
        try:
            with calls.on_cancel(lambda: self._cancel(launched)):
                self._pump(proc)
                code = proc.wait()
            limit = backstop.reason(code, self.spec.mem_mib)
            clean = not self.timed_out.is_set() and not self._left_behind(launched)
        except BaseException:
            self._expire(launched)
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
            self.engine.release(launched, clean)
        return code, limit

    def _expire(self, launched: Launched) -> None:
        """End the sandbox's processes. A container runsc has not made (or started) yet
        cannot be killed (a cancel that came before or during its start): the kill is sent
        again until the sandbox is gone, for at most KILL_WAIT_SECONDS."""
        self.timed_out.set()
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while launched.process.poll() is None and (left := deadline - time.monotonic()) > 0:
            self.engine.runsc("kill", "--all", launched.container_id, "KILL", timeout=left)
            time.sleep(KILL_RETRY_SECONDS)  # a container made after this kill: the next one

    def _cancel(self, launched: Launched) -> None:
        self.cancelled.set()
        self._expire(launched)

    def _left_behind(self, launched: Launched) -> bool:
        """runsc left state for the container (it was killed, or failed): a command's
        non-zero exit is no reason for an extra `runsc delete`, which costs a runsc start."""
        try:
            names = os.listdir(self.engine.state_root)
        except OSError:
            return True
        return any(launched.container_id in name for name in names)

    def _take(self, name: str, chunk: bytes) -> None:
        self.captures[name].add(chunk)
        if self.on_output is not None:
            self.on_output(name, chunk)

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
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
                self._take(key.data, chunk)
        sel.close()
        proc.stdout.close()
        proc.stderr.close()


def runsc_failure(log: Path) -> str | None:
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
