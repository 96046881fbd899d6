"""gVisor engine: ``runsc`` (systrap platform) with the agent as the container's entry process.

The environment's rootfs directory is the container root under a memory overlay
(``--overlay2=root:memory``), so the base is never modified; the agent talks over stdio pipes.
A networked sandbox still has loopback only; its way out (the egress proxy) and its
published ports go through Unix sockets on the host (engines/gvisor_net.py).

A one-shot run (``run_once``) starts the same sandbox the same way with the command itself as
its entry process instead of the agent: `pyro run` needs nothing the agent offers beyond exec,
and starting Python in the sandbox is most of what such a run costs (gvisor_once.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import EngineUnavailable, SandboxError
from .agent_client import AgentClient
from .base import BootSpec, Emit, Engine, Sandbox, wait_hello
from .gvisor_cgroups import CgroupWatch, HostCgroups
from .gvisor_oci import oci_config
from .limits import guest_limits
from .profile import GVISOR

if TYPE_CHECKING:  # imported by a networked boot only (its imports cost every start)
    from .gvisor_net import GvisorNet

__all__ = ["GvisorEngine", "GvisorSandbox", "container_id", "oci_config", "wait_hello"]


def container_id(sandbox_id: str) -> str:
    """runsc's name for the sandbox ``sandbox_id`` (also its host cgroups')."""
    return f"pyro-{sandbox_id}"


class Launched(NamedTuple):
    """A started `runsc run`: its container, process and host cgroups."""

    container_id: str
    process: subprocess.Popen[bytes]
    cgroups: HostCgroups


class GvisorSandbox(Sandbox):
    def __init__(
        self,
        engine: GvisorEngine,
        launched: Launched,
        workdir: Path,
        mem_mib: int,
        net: GvisorNet | None = None,
    ) -> None:
        self.info = GVISOR
        self.launched = launched
        self.net = net
        self.mem_mib = mem_mib
        self.engine = engine
        self.container_id = launched.container_id
        self.process = process = launched.process
        self.workdir = workdir
        assert process.stdout is not None and process.stdin is not None
        name = f"sandbox {self.container_id}"
        self.client = AgentClient(process.stdout, process.stdin, name=name)
        self.hello = {}
        self.backstop = CgroupWatch(launched.cgroups)
        if net is not None:
            net.client = self.client

    def limit_exceeded(self) -> str | None:
        return self.backstop.reason(self.process.poll(), self.mem_mib)

    def _request_exit(self) -> bool:
        # EOF on stdin ends the agent, so the container exits and runsc cleans up (~40 ms);
        # a killed runsc leaves a sandbox behind that `runsc delete --force` needs ~1.5 s for.
        self.client.close_writer()
        return True

    def publish_port(self, guest_port: int, host_port: int) -> None:
        if self.net is None:
            raise SandboxError("this sandbox has no network: published ports need one")
        self.net.publish(guest_port, host_port)

    def unpublish_port(self, host_port: int) -> None:
        if self.net is not None:
            self.net.unpublish(host_port)

    def _shutdown(self, clean_exit: bool) -> None:
        if self.net is not None:
            self.net.close()
        self.engine.release(self.launched, clean_exit)


class GvisorEngine(Engine):
    profile = GVISOR

    def __init__(self, state_root: Path) -> None:
        self.state_root = state_root

    def runsc_path(self) -> str | None:
        return shutil.which(GVISOR.binary or "runsc")

    def runsc_base(self) -> list[str]:
        return [
            self.runsc_path() or "runsc",
            "--root",
            str(self.state_root),
            "--platform",
            os.environ.get("PYRO_GVISOR_PLATFORM", "systrap"),
        ]

    def run_argv(
        self,
        bundle: Path,
        container: str,
        network: bool = False,
        log: Path | None = None,
        memory_root: bool = True,
    ) -> list[str]:
        """`runsc run`: loopback only, the rootfs under a memory overlay (never written), in
        host cgroups that bound its memory, tasks and CPU (``oci_config``). With ``network``
        the guest may connect to host Unix sockets in its mounts: only the read-only socket
        directory of ``GvisorNet`` holds any. With ``log``, runsc's own log goes there.
        Without ``memory_root`` the root is used as it is: a workspace's system layer, an
        overlay on disk already (workspaces/system_layer.py)."""
        base = self.runsc_base()
        return [
            base[0],
            *([f"--log={log}"] if log is not None else []),
            *base[1:],
            "--network",
            "none",
            *(["--host-uds", "open"] if network else []),
            "--overlay2",
            "root:memory" if memory_root else "none",
            "--ignore-cgroups",  # pyro makes its host cgroups itself (gvisor_cgroups.py)
            "run",
            "--bundle",
            str(bundle),
            container,
        ]

    def unavailable_reason(self) -> str | None:
        if self.runsc_path() is None:
            return f"runsc not found (install it: {GVISOR.install_hint})"
        if os.geteuid() != 0:
            return "the gvisor engine needs root to run runsc"
        return None

    def launch(
        self,
        spec: BootSpec,
        net: GvisorNet | None = None,
        process: dict[str, Any] | None = None,
        log: Path | None = None,
        **popen: Any,
    ) -> Launched:
        """The one way a sandbox starts: write its bundle (``process`` replaces the agent as
        the entry process), then start `runsc run` inside host cgroups made here."""
        reason = self.unavailable_reason()
        if reason:
            raise EngineUnavailable(f"gvisor engine is not available: {reason}")
        self.state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        bundle = spec.workdir / "bundle"
        bundle.mkdir(parents=True, exist_ok=True)
        config = oci_config(spec, spec.root_dir or spec.environment.rootfs_dir, net)
        config["process"].update(process or {})
        (bundle / "config.json").write_text(json.dumps(config))
        container = container_id(spec.sandbox_id)
        memory_root = spec.root_dir is None
        cmd = self.run_argv(bundle, container, net is not None, log, memory_root)
        cgroups = HostCgroups(container, spec.mem_mib, spec.vcpu_count)
        HostCgroups.sweep()
        try:
            cgroups.create()
            proc = subprocess.Popen(cgroups.wrap(cmd), start_new_session=True, **popen)
        except OSError as exc:
            cgroups.remove(wait=0)
            raise EngineUnavailable(f"cannot start the gVisor sandbox: {exc}") from exc
        except BaseException:
            cgroups.remove(wait=0)
            raise
        return Launched(container, proc, cgroups)

    def release(self, launched: Launched, clean_exit: bool) -> None:
        """Once its `runsc run` ended: after a clean exit runsc removed its own state and
        only the host cgroups remain; otherwise the container is destroyed."""
        if clean_exit:
            launched.cgroups.remove()
        else:
            self.destroy(launched.container_id)

    def runsc(self, *args: str, timeout: float = 30) -> None:
        """Run a runsc command on this engine's state (kill, delete), ignoring failure (a
        runsc that hangs past ``timeout`` is killed, as one that failed)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [*self.runsc_base(), *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                timeout=timeout,
            )

    def destroy(self, container: str) -> None:
        """End a container whatever state it is in, and remove its host cgroups (runsc
        leaves them when its own `run` process was killed)."""
        self.runsc("kill", "--all", container, "KILL")
        self.runsc("delete", "--force", container)
        HostCgroups(container).remove()

    def reclaim(self, sandbox_id: str) -> None:
        if self.state_root.is_dir():  # else no runsc ever ran here
            self.destroy(container_id(sandbox_id))

    def boot(self, spec: BootSpec) -> Sandbox:
        net = None
        if spec.network:
            from .gvisor_net import GvisorNet

            net = GvisorNet(spec.workdir, spec.egress_proxy, spec.sandbox_id)
        log = spec.workdir / "engine.log"
        try:
            with log.open("ab") as log_handle:
                launched = self.launch(
                    spec, net, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_handle
                )
        except BaseException:
            if net is not None:
                net.close()
            raise
        sandbox = GvisorSandbox(self, launched, spec.workdir, spec.mem_mib, net)
        limits = guest_limits(spec.mem_mib, watchdog=True)
        sandbox.hello = wait_hello(sandbox, spec.boot_timeout, log, limits)
        return sandbox

    def run_once(
        self, spec: BootSpec, command: str, timeout: float, cwd: str, on_output: Emit | None
    ) -> dict[str, Any]:
        from .gvisor_once import OneShot  # only `pyro run` needs it

        return OneShot(self, spec, on_output).run(command, timeout, cwd)
