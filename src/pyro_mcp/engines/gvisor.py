"""gVisor engine: ``runsc`` (systrap platform) with the agent as the container's entry process.

The environment's rootfs directory is the container root under a memory overlay
(``--overlay2=root:memory``), so the base is never modified; the agent talks over stdio pipes.
A networked sandbox still has loopback only; its way out (the egress proxy) and its
published ports go through Unix sockets on the host (engines/gvisor_net.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EngineUnavailable, SandboxError
from .agent_client import AgentClient
from .base import BootSpec, Engine, EngineInfo, Sandbox, wait_hello
from .gvisor_cgroups import CgroupWatch, HostCgroups
from .limits import guest_limits, tmpfs_size_mib

if TYPE_CHECKING:  # imported by a networked boot only (its imports cost every start)
    from .gvisor_net import GvisorNet

CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_NET_ADMIN",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
    "CAP_SYS_PTRACE",
    "CAP_SYS_ADMIN",
    "CAP_SYS_RESOURCE",
    "CAP_IPC_LOCK",
]
GUEST_ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONPATH=/opt/pyro",
    "PYTHONDONTWRITEBYTECODE=1",
    "HOME=/root",
    "LANG=C.UTF-8",
]
INFO = EngineInfo(name="gvisor", isolation="gvisor-sentry", real_vm=False, network=True)


def _bind(destination: str, source: Path | None, mode: str) -> list[dict[str, Any]]:
    """A bind mount of a host directory, or nothing when there is none."""
    if source is None:
        return []
    return [
        {
            "destination": destination,
            "type": "bind",
            "source": str(source),
            "options": ["rbind", mode],
        }
    ]


def _mounts(spec: BootSpec, tmpfs_size: str, net: GvisorNet | None) -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", tmpfs_size],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", tmpfs_size],
        },
        {
            "destination": "/run",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=755", tmpfs_size],
        },
        *_bind("/workspace", spec.workspace_dir, "rw"),
        *_bind("/opt/pyro", spec.agent_dir, "ro"),
        *([net.mount()] if net is not None else []),
    ]


def oci_config(spec: BootSpec, rootfs: Path, net: GvisorNet | None = None) -> dict[str, Any]:
    caps = {key: CAPABILITIES for key in ("bounding", "effective", "permitted", "inheritable")}
    tmpfs_size = f"size={tmpfs_size_mib(spec.mem_mib)}m"
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/usr/bin/python3", "-S", "-B", "-m", "pyro_guest.agent", "--init"],
            "env": GUEST_ENV,
            "cwd": "/",
            "capabilities": caps,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}],
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": "pyro",
        "mounts": _mounts(spec, tmpfs_size, net),
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        },
    }


class GvisorSandbox(Sandbox):
    def __init__(
        self,
        engine: GvisorEngine,
        container_id: str,
        process: subprocess.Popen[bytes],
        workdir: Path,
        mem_mib: int,
        cgroups: HostCgroups,
        net: GvisorNet | None = None,
    ) -> None:
        self.info = INFO
        self.cgroups = cgroups
        self.net = net
        self.mem_mib = mem_mib
        self.engine = engine
        self.container_id = container_id
        self.process = process
        self.workdir = workdir
        assert process.stdout is not None and process.stdin is not None
        self.client = AgentClient(process.stdout, process.stdin, name=f"sandbox {container_id}")
        self.hello = {}
        self.backstop = CgroupWatch(cgroups)
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
        if not clean_exit:
            self.engine.destroy(self.container_id)
        else:
            self.cgroups.remove()


class GvisorEngine(Engine):
    name = "gvisor"

    def __init__(self, state_root: Path) -> None:
        self.state_root = state_root

    def info(self) -> EngineInfo:
        return INFO

    def destroy(self, container_id: str) -> None:
        """End a container whatever state it is in, and remove its host cgroups (runsc
        leaves them when its own `run` process was killed)."""
        kill = ["kill", "--all", container_id, "KILL"]
        for action in (kill, ["delete", "--force", container_id]):
            subprocess.run(
                [*self.runsc_base(), *action],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                timeout=30,
            )
        HostCgroups(container_id).remove()

    @staticmethod
    def launch(cmd: list[str], cgroups: HostCgroups, **popen: Any) -> subprocess.Popen[bytes]:
        """Start `runsc run` (``cmd``) inside the sandbox's host cgroups, made here."""
        HostCgroups.sweep()
        try:
            cgroups.create()
            return subprocess.Popen(cgroups.wrap(cmd), start_new_session=True, **popen)
        except OSError as exc:
            cgroups.remove(wait=0)
            raise EngineUnavailable(f"cannot start the gVisor sandbox: {exc}") from exc
        except BaseException:
            cgroups.remove(wait=0)
            raise

    def runsc_path(self) -> str | None:
        return shutil.which("runsc")

    def runsc_base(self) -> list[str]:
        return [
            self.runsc_path() or "runsc",
            "--root",
            str(self.state_root),
            "--platform",
            os.environ.get("PYRO_GVISOR_PLATFORM", "systrap"),
        ]

    def run_argv(self, bundle: Path, container_id: str, network: bool = False) -> list[str]:
        """`runsc run`: loopback only, the rootfs under a memory overlay (never written), in
        host cgroups that bound its memory, tasks and CPU (``oci_config``). With ``network``
        the guest may connect to host Unix sockets in its mounts: only the read-only socket
        directory of ``GvisorNet`` holds any."""
        return [
            *self.runsc_base(),
            "--network",
            "none",
            *(["--host-uds", "open"] if network else []),
            "--overlay2",
            "root:memory",
            "--ignore-cgroups",  # pyro makes its host cgroups itself (gvisor_cgroups.py)
            "run",
            "--bundle",
            str(bundle),
            container_id,
        ]

    def unavailable_reason(self) -> str | None:
        if self.runsc_path() is None:
            return "runsc not found (install it: apt-get install -t bookworm-backports runsc)"
        if os.geteuid() != 0:
            return "the gvisor engine needs root to run runsc"
        return None

    def boot(self, spec: BootSpec) -> Sandbox:
        reason = self.unavailable_reason()
        if reason:
            raise EngineUnavailable(f"gvisor engine is not available: {reason}")
        self.state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        bundle = spec.workdir / "bundle"
        bundle.mkdir(parents=True, exist_ok=True)
        net = None
        if spec.network:
            from .gvisor_net import GvisorNet

            net = GvisorNet(spec.workdir, spec.egress_proxy)
        config = oci_config(spec, spec.environment.rootfs_dir, net)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        container_id = f"pyro-{spec.sandbox_id}"
        log = spec.workdir / "engine.log"
        cmd = self.run_argv(bundle, container_id, network=net is not None)
        cgroups = HostCgroups(container_id, spec.mem_mib, spec.vcpu_count)
        try:
            with log.open("ab") as log_handle:
                process = self.launch(
                    cmd, cgroups, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_handle
                )
        except BaseException:
            if net is not None:
                net.close()
            raise
        sandbox = GvisorSandbox(
            self, container_id, process, spec.workdir, spec.mem_mib, cgroups, net
        )
        limits = guest_limits(spec.mem_mib, watchdog=True)
        sandbox.hello = wait_hello(sandbox, spec.boot_timeout, log, limits)
        return sandbox
