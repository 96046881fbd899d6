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
from .agent_client import AgentClient
from .base import BootSpec, Engine, EngineInfo, Sandbox, wait_hello

KERNEL_ARGS = (
    "console=ttyS0 quiet loglevel=1 panic=-1 reboot=t mitigations=off nokaslr "
    "tsc=reliable no_timer_check cryptomgr.notests random.trust_cpu=on 8250.nr_uarts=1 "
    "i8042.noaux i8042.nomux i8042.nopnp"
)
AGENT_PORT = "org.pyro.agent"


def qemu_binary() -> str | None:
    return shutil.which("qemu-system-x86_64")


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


class QemuSandbox(Sandbox):
    def __init__(
        self, info: EngineInfo, process: subprocess.Popen[bytes], workdir: Path, sock: socket.socket
    ) -> None:
        self.info = info
        self.process = process
        self.workdir = workdir
        self.sock = sock
        reader = sock.makefile("rb")
        writer = sock.makefile("wb")
        self.client = AgentClient(reader, writer, name=f"vm {workdir.name}")
        self.hello = {}

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
    name = "qemu"

    def __init__(self, accel: str) -> None:
        if accel not in ("kvm", "tcg"):
            raise ValueError(f"unknown accelerator {accel!r}")
        self.accel = accel

    def info(self) -> EngineInfo:
        isolation = "vm-kvm" if self.accel == "kvm" else "vm-tcg"
        return EngineInfo(name="qemu", isolation=isolation, real_vm=True, network=True)

    def unavailable_reason(self) -> str | None:
        if qemu_binary() is None:
            return "qemu-system-x86_64 not found (install it: apt-get install qemu-system-x86)"
        if self.accel == "kvm":
            ok, why = kvm_usable()
            if not ok:
                return why
        return None

    def command(self, spec: BootSpec, initrd: Path, sock_path: Path) -> list[str]:
        env = spec.environment
        accel = (
            ["-accel", "kvm", "-cpu", "host"]
            if self.accel == "kvm"
            else ["-accel", "tcg,tb-size=256", "-cpu", "max"]
        )
        upper = spec.extra.get("upper_device", "tmpfs")
        cmd = [
            qemu_binary() or "qemu-system-x86_64",
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
            f"{KERNEL_ARGS} pyro.upper={upper}",
            "-drive",
            f"file={env.rootfs_image},format=raw,if=virtio,readonly=on",
            "-device",
            "virtio-rng-pci",
            "-device",
            "virtio-serial-pci,id=vser",
            "-chardev",
            f"socket,id=agent,path={sock_path},server=on,wait=off",
            "-device",
            f"virtserialport,bus=vser.0,chardev=agent,name={AGENT_PORT}",
            "-qmp",
            f"unix:{spec.workdir / 'qmp.sock'},server=on,wait=off",
        ]
        for disk in spec.extra.get("disks", []):
            cmd += ["-drive", f"file={disk},format=raw,if=virtio,cache=writeback"]
        if spec.network:
            cmd += [
                "-netdev",
                "user,id=net0",
                "-device",
                "virtio-net-pci,netdev=net0",
            ]
        return cmd

    def boot(self, spec: BootSpec) -> Sandbox:
        reason = self.unavailable_reason()
        if reason:
            raise EngineUnavailable(f"qemu engine ({self.accel}) is not available: {reason}")
        spec.workdir.mkdir(parents=True, exist_ok=True)
        initrd = spec.workdir / "initrd.cpio.gz"
        with initrd.open("wb") as out:
            out.write(spec.environment.initramfs.read_bytes())
            out.write(agent_initrd(spec.agent_dir).read_bytes())
        sock_path = spec.workdir / "agent.sock"
        log = spec.workdir / "engine.log"
        with log.open("ab") as log_handle:
            process = subprocess.Popen(
                self.command(spec, initrd, sock_path),
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=log_handle,
                start_new_session=True,
            )
        sock = self._connect(process, sock_path, log)
        sandbox = QemuSandbox(self.info(), process, spec.workdir, sock)
        sandbox.hello = wait_hello(sandbox, spec.boot_timeout, spec.workdir / "console.log")
        return sandbox

    @staticmethod
    def _connect(process: subprocess.Popen[bytes], path: Path, log: Path) -> socket.socket:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace").strip()[-800:]
                raise SandboxError(f"qemu exited during start (exit {process.returncode}): {tail}")
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(path))
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    process.kill()
                    raise SandboxError("qemu did not open its agent socket within 10s") from None
                time.sleep(0.005)
