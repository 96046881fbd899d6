"""Host-process engine: the same agent, run as a plain host process. NO isolation.

Used only where the contract's opt-in ``allow_host_compat`` asks for it (and for fast unit
tests of manager logic). Payloads then say ``execution_mode: host_compat``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .agent_client import AgentClient
from .base import BootSpec, Engine, Sandbox, wait_hello
from .profile import HOST


class HostSandbox(Sandbox):
    def __init__(self, process: subprocess.Popen[bytes], workdir: Path) -> None:
        self.info = HOST
        self.process = process
        self.workdir = workdir
        assert process.stdout is not None and process.stdin is not None
        self.client = AgentClient(process.stdout, process.stdin, name="host process")
        self.hello = {}

    def _request_exit(self) -> bool:
        self.client.close_writer()
        return True

    def _shutdown(self, clean_exit: bool) -> None:
        return None


class HostEngine(Engine):
    profile = HOST

    def unavailable_reason(self) -> str | None:
        return None

    def boot(self, spec: BootSpec) -> Sandbox:
        root = spec.workdir / "root"
        root.mkdir(parents=True, exist_ok=True)
        log = spec.workdir / "engine.log"
        with log.open("ab") as log_handle:
            process = subprocess.Popen(
                [sys.executable, "-B", "-s", "-m", "pyro_guest.agent"],
                cwd=root,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_handle,
                env={"PYTHONPATH": str(spec.agent()), "PATH": "/usr/bin:/bin"},
                start_new_session=True,
            )
        sandbox = HostSandbox(process, spec.workdir)
        sandbox.hello = wait_hello(sandbox, spec.boot_timeout, log)
        return sandbox
