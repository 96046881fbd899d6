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


SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCADDRT = 0x890B
IFF_RUNNING = 0x40
RTF_UP = 0x1
RTF_GATEWAY = 0x2


def _sockaddr(ip: str) -> bytes:
    return struct.pack("HH4s8x", socket.AF_INET, 0, socket.inet_aton(ip))


def _ifreq_addr(name: bytes, ip: str) -> bytes:
    return struct.pack("16s16s", name, _sockaddr(ip))


def configure_network(
    guest_ip: str, gateway_ip: str, subnet_cidr: str, dns: list[str], default_route: bool = True
) -> str:
    """Static IPv4 set-up with ioctls (the guest has no DHCP client and may lack iproute2).

    Without ``default_route`` only the subnet is reachable: a connection anywhere else
    fails at once (ENETUNREACH) instead of waiting for a network that drops it."""
    names = sorted(n for n in os.listdir("/sys/class/net") if n != "lo")
    if not names:
        raise RuntimeError("no network interface in the guest")
    name = names[0].encode()
    prefix = int(subnet_cidr.split("/")[1])
    netmask = socket.inet_ntoa(struct.pack(">I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCSIFADDR, _ifreq_addr(name, guest_ip))
        fcntl.ioctl(sock, SIOCSIFNETMASK, _ifreq_addr(name, netmask))
        req = struct.pack("16sH14s", name, 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(
            sock, SIOCSIFFLAGS, struct.pack("16sH14s", name, flags | IFF_UP | IFF_RUNNING, b"")
        )
        if default_route:
            fcntl.ioctl(sock, SIOCADDRT, _default_route(gateway_ip))
    with open("/etc/resolv.conf", "w") as handle:
        handle.write("".join(f"nameserver {server}\n" for server in dns))
        if not dns:  # glibc then asks 127.0.0.1:53, which refuses at once
            handle.write("# no DNS in this guest: use the HTTP proxy (names resolve there)\n")
    return name.decode()


def _default_route(gateway_ip: str) -> bytes:
    """A ``struct rtentry`` for SIOCADDRT: 0.0.0.0/0 via ``gateway_ip``."""
    route = struct.pack(
        "@L16s16s16sHhLPhPLLH",
        0,
        _sockaddr("0.0.0.0"),
        _sockaddr(gateway_ip),
        _sockaddr("0.0.0.0"),
        RTF_UP | RTF_GATEWAY,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    )
    route += b"\0" * (120 - len(route))
    return route


BLKFLSBUF = 0x1261


def drop_cached_blocks(device: str) -> None:
    """A VM resumed from a boot template saw a placeholder disk at probe time: forget any
    blocks of ``device`` cached then."""
    fd = os.open(device, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, BLKFLSBUF, 0)
    finally:
        os.close(fd)


def mount_workspace(device: str, target: str) -> None:
    """Mount the workspace disk (its cached blocks dropped first: a template's)."""
    drop_cached_blocks(device)
    os.makedirs(target, exist_ok=True)
    if os.path.ismount(target):
        return
    status = os.spawnv(os.P_WAIT, "/bin/mount", ["mount", "-t", "ext4", device, target])  # noqa: S606
    if status != 0:
        raise RuntimeError(f"cannot mount the workspace disk {device} (mount exit {status})")
    try:  # mkfs's lost+found is not the user's: /workspace starts empty on every engine
        os.rmdir(os.path.join(target, "lost+found"))
    except OSError:
        pass
