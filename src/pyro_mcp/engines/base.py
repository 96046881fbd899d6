"""The engine interface: boot a sandbox from an environment, hand back its agent stream."""

from __future__ import annotations

import abc
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ..environments.store import InstalledEnvironment
from ..errors import SandboxError
from .agent_client import AgentClient
from .profile import EngineProfile


class BootSpec(NamedTuple):
    sandbox_id: str
    environment: InstalledEnvironment
    workdir: Path  # private per-sandbox runtime directory on the host
    # The staged guest agent package (contains pyro_guest/); None for a sandbox whose only
    # process is the command itself (the gVisor one-shot run), which needs no agent.
    agent_dir: Path | None
    vcpu_count: int = 1
    mem_mib: int = 1024
    network: bool = False
    boot_timeout: float = 120.0
    # A persistent /workspace: a host directory (gvisor bind mount) or an ext4 disk (VMs).
    workspace_dir: Path | None = None
    workspace_disk: Path | None = None
    # With network: the Unix socket of the egress proxy (network/proxy.py), the guest's
    # only way out; None leaves a networked guest with nowhere to go.
    egress_proxy: str | None = None
    # A workspace's writable system layer (workspaces/system_layer.py): gVisor's root
    # directory (the environment's rootfs under an overlay on disk, used without runsc's
    # memory overlay), or a VM's disk for the root overlay's upper layer. None: the root's
    # writable layer is in memory.
    root_dir: Path | None = None
    system_disk: Path | None = None
    # A VM's memory saved by ``Sandbox.suspend`` (same disks): the sandbox resumes from it
    # instead of booting (QEMU only; other engines never get one).
    memory_image: Path | None = None

    def agent(self) -> Path:
        if self.agent_dir is None:
            raise SandboxError("this sandbox needs the guest agent, but none was staged")
        return self.agent_dir


class Sandbox(abc.ABC):
    """A running sandbox: its engine process and a connected agent client."""

    info: EngineProfile
    client: AgentClient
    process: subprocess.Popen[bytes]
    workdir: Path
    hello: dict[str, Any]

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    @abc.abstractmethod
    def _shutdown(self, clean_exit: bool) -> None:
        """Engine-specific teardown once the process is gone (state dirs, sockets)."""

    def limit_exceeded(self) -> str | None:
        """Once the engine process has ended: which resource limit ended it, if one did
        (the engine's host-side backstop; see ``engines/limits.py``), else None."""
        return None

    def publish_port(self, guest_port: int, host_port: int) -> None:
        """Forward 127.0.0.1:host_port on the host to the guest's guest_port."""
        raise SandboxError(f"the {self.info.name} engine cannot publish ports")

    def unpublish_port(self, host_port: int) -> None:
        return None

    def suspend(self, target: Path) -> None:
        """Save the sandbox's memory to ``target`` and end it (its disks stay as they are):
        a later boot with ``BootSpec.memory_image`` resumes it. Only VMs can."""
        raise SandboxError(f"the {self.info.name} engine cannot keep a sandbox's memory")

    def _request_exit(self) -> bool:
        """Ask the sandbox to end by itself (e.g. EOF to its agent); True if that works."""
        return False

    def stop(self, grace: float = 5.0) -> None:
        """End the sandbox: politely if the engine can, else TERM, then KILL after ``grace``."""
        self._end(grace, signal.SIGTERM)

    def kill(self) -> None:
        """End the sandbox now (its state is disposable)."""
        self._end(1.0, signal.SIGKILL)

    def _end(self, grace: float, first_signal: int) -> None:
        clean = False
        if self.alive() and self._request_exit():
            clean = wait_exit(self.process, grace)
        if self.alive():
            _signal_group(self.process, first_signal)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait()
        self._shutdown(clean)
        self.client.close()


def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for the process to exit, noticing it at once (a pidfd, not Popen's sleep loop)."""
    try:
        fd = os.pidfd_open(process.pid)
    except (OSError, AttributeError):
        try:
            process.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            return False
    finally:
        os.close(fd)
    process.wait()
    return True


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            process.send_signal(sig)
        except ProcessLookupError:
            pass


Emit = Callable[[str, bytes], None]


class Engine(abc.ABC):
    profile: EngineProfile  # its facts (engines/profile.py)

    def info(self) -> EngineProfile:
        return self.profile

    @abc.abstractmethod
    def unavailable_reason(self) -> str | None:
        """Why this engine cannot run here (missing binary, no /dev/kvm …), or None."""

    @abc.abstractmethod
    def boot(self, spec: BootSpec) -> Sandbox: ...

    def run_once(
        self, spec: BootSpec, command: str, timeout: float, cwd: str, on_output: Emit | None
    ) -> dict[str, Any]:
        """Run ``command`` as the sandbox's only process (no agent) and end the sandbox:
        the exec result (exit_code, duration_ms, timed_out, stdout/stderr and their
        ``_truncated`` flags). Only engines whose profile says ``one_shot`` can."""
        raise SandboxError(f"the {self.profile.name} engine has no one-shot run")

    def reclaim(self, sandbox_id: str) -> None:
        """End what a sandbox whose owner died left in the engine's own state (its
        processes are already killed)."""
        return None


def wait_hello(
    sandbox: Sandbox, timeout: float, log: Path | None, limits: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Wait for the agent's first answer; on failure include the engine's log tail.

    ``limits`` (``engines.limits.guest_limits``) are what the agent enforces in the guest."""
    deadline = time.monotonic() + timeout
    payload = os.urandom(64)
    args: dict[str, Any] = {"time": time.time()}
    if limits is not None:
        args["limits"] = limits
    try:
        result, _ = sandbox.client.call(
            "hello",
            args,
            data=payload,
            timeout=max(0.1, deadline - time.monotonic()),
        )
    except Exception as exc:
        tail = ""
        if not sandbox.alive():  # the engine itself died: its own log says why
            log = sandbox.workdir / "engine.log"
        if log is not None and log.exists():
            lines = log.read_text(errors="replace").strip().splitlines()[-12:]
            tail = "\n" + "\n".join(lines) if lines else ""
        sandbox.kill()
        raise type(exc)(f"{sandbox.info.name} sandbox failed to boot: {exc}{tail}") from exc
    return result
