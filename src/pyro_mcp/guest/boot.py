"""Guest-side machine set-up: mounts, loopback, clock, entropy, and the PID 1 reaper."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import time

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

def setup_vm() -> None:
    """What an init does before services (the initramfs already mounted /proc, /sys, /run …)."""
    socket.sethostname("pyro")
    _loopback_up()


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))


def find_virtio_port(name: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    base = "/sys/class/virtio-ports"
    while True:
        try:
            for port in sorted(os.listdir(base)):
                with open(os.path.join(base, port, "name")) as handle:
                    if handle.read().strip() == name:
                        return f"/dev/{port}"
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"virtio port {name} not found")
        time.sleep(0.02)


def set_clock(epoch: float) -> None:
    """A VM restored from a saved state wakes with a stale clock: the host tells it the time."""
    try:
        if abs(time.time() - epoch) > 1.0:
            time.clock_settime(time.CLOCK_REALTIME, epoch)
    except (OSError, PermissionError):
        pass


def mix_entropy(data: bytes) -> None:
    """Restored VMs share an RNG state: mix host randomness into the pool."""
    try:
        with open("/dev/urandom", "wb") as handle:
            handle.write(data)
    except OSError:
        pass


def become_init(poweroff: bool) -> None:
    """Fork: the child returns and runs the agent; the parent stays PID 1 and reaps orphans."""
    child = os.fork()
    if child == 0:
        return
    while True:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child:
            break
    if poweroff:
        os.sync()
        try:
            with open("/proc/sysrq-trigger", "w") as handle:
                handle.write("o")
        except OSError:
            pass
        time.sleep(10)
    os._exit(0)
