"""QEMU engine: a real VM (q35) with KVM where a guest really boots, else TCG emulation.

The environment's ext4 image is attached read-only; the initramfs puts a tmpfs (or the
workspace disk) overlay on top, so the image is shared and never written. The guest agent
speaks over a virtio-serial port backed by a Unix socket in the sandbox's workdir.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from ..environments.initramfs import build_agent_initramfs
from ..errors import EngineUnavailable, SandboxError
from ..hostcmd import start_detached
from ..network.proxy import forward_command
from ..paths import socket_address
from . import templates
from .agent_client import AgentClient
from .base import BootSpec, Engine, Sandbox, wait_hello
from .limits import guest_limits
from .network import qemu_netdev
from .profile import QEMU_BINARY, QEMU_KVM, QEMU_TCG, EngineProfile
from .qmp import Qmp

KERNEL_ARGS = (
    "console=ttyS0 quiet loglevel=1 panic=-1 reboot=t mitigations=off nokaslr "
    "tsc=reliable no_timer_check cryptomgr.notests random.trust_cpu=on 8250.nr_uarts=1 "
    "i8042.noaux i8042.nomux i8042.nopnp"
)
AGENT_PORT = "org.pyro.agent"
SUSPEND_TIMEOUT = 120.0  # saving a workspace VM's memory (a few seconds for 1 GiB)


def qemu_binary() -> str | None:
    return shutil.which(QEMU_BINARY)


def kvm_usable() -> tuple[bool, str]:
    if not os.path.exists("/dev/kvm"):
        return False, "/dev/kvm does not exist"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not readable and writable by this user"
    return True, "/dev/kvm present"


def agent_initrd(agent_dir: Path) -> Path:
    path = agent_dir / "agent.cpio.gz"
    if not path.exists():
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(build_agent_initramfs(agent_dir))
        tmp.rename(path)
    return path


def _size(disk: Path | None) -> int | None:
    """A disk's size: the guest sees it at boot, so a template only fits its own sizes."""
    return disk.stat().st_size if disk is not None else None


def _log_tail(log: Path, chars: int) -> str:
    """The end of QEMU's log on one line (it goes into one-line errors and last_error)."""
    text = log.read_text(errors="replace")[-chars:] if log.exists() else ""
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def listen(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` (any length), private to this user."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        with socket_address(path) as address:
            sock.bind(address)
    finally:
        os.umask(old)
    sock.listen(4)
    return sock


def _channels(spec: BootSpec, sock_path: Path, fds: tuple[int, int] | None) -> list[str]:
    """The agent's virtio-serial port and the QMP monitor, on our sockets or paths."""
    if fds is not None:
        agent_chardev = f"socket,id=agent,fd={fds[0]},server=on,wait=off"
        qmp = ["-chardev", f"socket,id=qmp,fd={fds[1]},server=on,wait=off"]
        qmp += ["-mon", "chardev=qmp,mode=control"]
    else:
        agent_chardev = f"socket,id=agent,path={sock_path},server=on,wait=off"
        qmp = ["-qmp", f"unix:{spec.workdir / 'qmp.sock'},server=on,wait=off"]
    return [
        "-device",
        "virtio-serial-pci,id=vser",
        "-chardev",
        agent_chardev,
        "-device",
        f"virtserialport,bus=vser.0,chardev=agent,name={AGENT_PORT}",
        *qmp,
    ]


def _devices(spec: BootSpec) -> list[str]:
    """The workspace and system disks (vdb, vdc: in this order) and the restricted network,
    when the sandbox has them."""
    cmd: list[str] = []
    for disk in (spec.workspace_disk, spec.system_disk):
        if disk is not None:
            cmd += ["-drive", f"file={disk},format=raw,if=virtio,cache=writeback"]
    if spec.network:
        cmd += [
            "-netdev",
            qemu_netdev(forward_command(spec.egress_proxy) if spec.egress_proxy else None),
            "-device",
            "virtio-net-pci,netdev=net0",
        ]
    return cmd


class QemuSandbox(Sandbox):
    def __init__(
        self,
        info: EngineProfile,
        process: subprocess.Popen[bytes],
        workdir: Path,
        sock: socket.socket,
    ) -> None:
        self.info = info
        self.process = process
        self.workdir = workdir
        self.sock = sock
        reader = sock.makefile("rb")
        writer = sock.makefile("wb")
        self.client = AgentClient(reader, writer, name=f"vm {workdir.name}")
        self.hello = {}

    def _monitor(self, command: str) -> str:
        qmp = Qmp(self.workdir / "qmp.sock")
        try:
            return str(qmp.execute("human-monitor-command", **{"command-line": command}) or "")
        finally:
            qmp.close()

    def publish_port(self, guest_port: int, host_port: int) -> None:
        reply = self._monitor(f"hostfwd_add net0 tcp:127.0.0.1:{host_port}-:{guest_port}")
        if reply.strip():
            raise SandboxError(f"cannot publish port {guest_port}: {reply.strip()}")

    def unpublish_port(self, host_port: int) -> None:
        self._monitor(f"hostfwd_remove net0 tcp:127.0.0.1:{host_port}")

    def suspend(self, target: Path) -> None:
        """In standby first, as a template's save: the resumed agent waits for a new host."""
        self.client.call("hello", {"standby": True}, timeout=10)
        qmp = Qmp(self.workdir / "qmp.sock")
        try:
            templates.save_state(qmp, target, SUSPEND_TIMEOUT)
        finally:
            qmp.close()
        self.kill()  # paused, its disks flushed by the migration: nothing more to keep

    def _shutdown(self, clean_exit: bool) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()
        except OSError:
            pass
        for name in ("agent.sock", "qmp.sock", "initrd.cpio.gz"):
            try:
                (self.workdir / name).unlink()
            except FileNotFoundError:
                pass


class QemuEngine(Engine):
    def __init__(self, accel: str, template_root: Path | None = None) -> None:
        if accel not in ("kvm", "tcg"):
            raise ValueError(f"unknown accelerator {accel!r}")
        self.accel = accel
        self.profile = QEMU_KVM if accel == "kvm" else QEMU_TCG
        enabled = os.environ.get("PYRO_VM_TEMPLATES", "1") != "0"
        self.template_root = template_root if enabled else None

    def unavailable_reason(self) -> str | None:
        if qemu_binary() is None:
            return f"{QEMU_BINARY} not found (install it: {QEMU_TCG.install_hint})"
        if self.accel == "kvm":
            ok, why = kvm_usable()
            if not ok:
                return why
        return None

    def command(
        self, spec: BootSpec, initrd: Path, sock_path: Path, fds: tuple[int, int] | None = None
    ) -> list[str]:
        """The QEMU command line. With ``fds`` (agent, QMP) the sockets are listening file
        descriptors made by us: no Unix path length limit, no window before they exist."""
        env = spec.environment
        accel = (
            ["-accel", "kvm", "-cpu", "host"]
            if self.accel == "kvm"
            else ["-accel", "tcg,tb-size=256", "-cpu", "max"]
        )
        return [
            qemu_binary() or QEMU_BINARY,
            "-machine",
            "q35",
            *accel,
            "-smp",
            str(spec.vcpu_count),
            "-m",
            str(spec.mem_mib),
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-no-reboot",
            "-serial",
            f"file:{spec.workdir / 'console.log'}",
            "-kernel",
            str(env.kernel),
            "-initrd",
            str(initrd),
            "-append",
            f"{KERNEL_ARGS} pyro.upper=tmpfs",
            "-drive",
            f"file={env.rootfs_image},format=raw,if=virtio,readonly=on",
            "-device",
            "virtio-rng-pci",
            *_channels(spec, sock_path, fds),
            *_devices(spec),
        ]

    def _template_key(self, spec: BootSpec) -> str | None:
        if self.template_root is None:
            return None
        artifacts = spec.environment.manifest.get("artifacts", {})
        binary = qemu_binary() or ""
        return templates.template_key(
            {
                "accel": self.accel,
                "qemu": [binary, os.stat(binary).st_size if binary else 0],
                "artifacts": {k: v.get("sha256") for k, v in artifacts.items()},
                "agent": spec.agent().name,
                "vcpu": spec.vcpu_count,
                "mem": spec.mem_mib,
                "network": qemu_netdev(None) if spec.network else None,
                "workspace_disk": _size(spec.workspace_disk),
                "system_disk": _size(spec.system_disk),
            }
        )

    def boot(self, spec: BootSpec) -> Sandbox:
        reason = self.unavailable_reason()
        if reason:
            raise EngineUnavailable(f"qemu engine ({self.accel}) is not available: {reason}")
        spec.workdir.mkdir(parents=True, exist_ok=True)
        if spec.memory_image is not None:  # a suspended VM: its disks are mounted already
            sandbox = self._launch(spec, self._initrd(spec), spec.memory_image)
            sandbox.hello["boot"] = "resumed"
            return sandbox
        key = self._template_key(spec)
        if key is not None and self.template_root is not None:
            path = templates.template_path(self.template_root, key)
            if templates.is_ready(path):
                try:
                    sandbox = self._restore(spec, path)
                except SandboxError:
                    shutil.rmtree(path, ignore_errors=True)  # stale or broken: boot cold
                else:
                    self._attach_disks(sandbox, spec)
                    return sandbox
        sandbox = self._cold_boot(spec)
        if key is not None and self.template_root is not None:
            self._save_template(sandbox, spec, key)
        self._attach_disks(sandbox, spec)
        return sandbox

    def _attach_disks(self, sandbox: QemuSandbox, spec: BootSpec) -> None:
        """After the boot (or a template's restore): the root onto the system disk, then
        /workspace mounted in that root (devices in ``_devices``' order)."""
        names = iter(("/dev/vdb", "/dev/vdc"))
        workspace = next(names) if spec.workspace_disk is not None else None
        system = next(names) if spec.system_disk is not None else None
        try:
            if system is not None:
                sandbox.client.call("system_root", {"device": system}, timeout=60)
            if workspace is not None:
                sandbox.client.call("mount_workspace", {"device": workspace}, timeout=60)
        except SandboxError:
            sandbox.kill()
            raise

    def _cold_boot(self, spec: BootSpec) -> QemuSandbox:
        return self._launch(spec, self._initrd(spec), None)

    @staticmethod
    def _initrd(spec: BootSpec) -> Path:
        """The environment's initramfs and the agent's (a restored VM gets the same bytes)."""
        initrd = spec.workdir / "initrd.cpio.gz"
        with initrd.open("wb") as out:
            out.write(spec.environment.initramfs.read_bytes())
            out.write(agent_initrd(spec.agent()).read_bytes())
        return initrd

    def _restore(self, spec: BootSpec, path: Path) -> QemuSandbox:
        return self._launch(spec, path / "initrd.cpio.gz", path)

    def _launch(self, spec: BootSpec, initrd: Path, template: Path | None) -> QemuSandbox:
        """``template``: a saved state to resume (a boot template's directory, or a file)."""
        listeners = [listen(spec.workdir / name) for name in ("agent.sock", "qmp.sock")]
        try:
            fds = (listeners[0].fileno(), listeners[1].fileno())
            cmd = self.command(spec, initrd, spec.workdir / "agent.sock", fds)
            if template is not None:
                cmd += templates.incoming_argument(template)
            process = start_detached(cmd, spec.workdir / "engine.log", pass_fds=fds)
        finally:
            for listener in listeners:
                listener.close()  # QEMU has its own copies now
        return self._attach(spec, process, template)

    def _attach(
        self, spec: BootSpec, process: subprocess.Popen[bytes], template: Path | None
    ) -> QemuSandbox:
        log = spec.workdir / "engine.log"
        sock: socket.socket | None = None
        try:
            sock = self._connect(process, spec.workdir / "agent.sock", log)
            if template is not None:
                templates.resume_at(spec.workdir / "qmp.sock")
        except SandboxError as exc:
            if sock is not None:
                sock.close()
            if process.poll() is None:
                process.kill()
            process.wait()
            if sock is None:
                raise  # _connect's error has the log's tail already
            raise SandboxError(f"{exc}: {_log_tail(log, 300)}") from exc  # QEMU's own words
        sandbox = QemuSandbox(self.profile, process, spec.workdir, sock)
        timeout = 20.0 if template is not None else spec.boot_timeout
        logs = spec.workdir / ("engine.log" if template is not None else "console.log")
        sandbox.hello = wait_hello(
            sandbox, timeout, logs, guest_limits(spec.mem_mib, watchdog=False)
        )
        sandbox.hello["boot"] = "template" if template is not None else "cold"
        return sandbox

    def _save_template(self, sandbox: QemuSandbox, spec: BootSpec, key: str) -> None:
        """Best effort: a failure here costs the next boot its speed-up, nothing else."""
        assert self.template_root is not None
        try:
            sandbox.client.call("hello", {"standby": True}, timeout=10)
            qmp = Qmp(spec.workdir / "qmp.sock")
            try:
                templates.save(
                    qmp,
                    self.template_root,
                    key,
                    spec.workdir / "initrd.cpio.gz",
                    {
                        "environment": spec.environment.spec.name,
                        "accel": self.accel,
                        "agent": spec.agent().name,
                        "rootfs_sha256": spec.environment.manifest.get("artifacts", {})
                        .get("rootfs.ext4", {})
                        .get("sha256"),
                    },
                )
            finally:
                qmp.close()
        except (SandboxError, OSError):
            pass
        finally:
            try:
                sandbox.client.call("hello", {"standby": False}, timeout=10)
            except SandboxError:
                pass

    @staticmethod
    def _connect(process: subprocess.Popen[bytes], path: Path, log: Path) -> socket.socket:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                tail = _log_tail(log, 800)
                raise SandboxError(f"qemu exited during start (exit {process.returncode}): {tail}")
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                with socket_address(path) as address:
                    sock.connect(address)
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    process.kill()
                    raise SandboxError("qemu did not open its agent socket within 10s") from None
                time.sleep(0.005)
