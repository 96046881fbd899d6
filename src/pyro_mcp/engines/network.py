"""The guest networks engines give a sandbox with networking: the one home of the
addresses the guest sees (each engine's profile, engines/profile.py, names its network).

QEMU (``USER_NETWORK``): restricted user networking: the guest reaches nothing but the
egress proxy, which QEMU forwards (``guestfwd``) to the supervisor's proxy
(network/proxy.py). The agent gives the guest an address on the subnet, no default route
(any direct connection fails at once), no DNS server (the proxy resolves names), and the
proxy variables for every process it starts.

gVisor (``LOOPBACK_NETWORK``): the sandbox has loopback only (``runsc --network none``);
the agent listens on 127.0.0.1:3128 and joins each connection to the host's proxy through a
Unix socket in ``TUNNEL_DIR`` (guest/tunnel.py, engines/gvisor_net.py). Published ports come
in the same way, reversed.
"""

from __future__ import annotations

from typing import Any

PROXY_IP = "10.0.2.100"
PROXY_PORT = 3128

USER_NETWORK: dict[str, Any] = {
    "guest_ip": "10.0.2.15",
    "gateway_ip": "10.0.2.2",
    "subnet_cidr": "10.0.2.0/24",
    "mac_address": "52:54:00:12:34:56",
    "dns_servers": [],
    "proxy": f"http://{PROXY_IP}:{PROXY_PORT}",
}

TUNNEL_DIR = "/run/pyro-net"
LOOPBACK_NETWORK: dict[str, Any] = {
    "guest_ip": "127.0.0.1",
    "gateway_ip": None,
    "subnet_cidr": "127.0.0.0/8",
    "mac_address": None,
    "dns_servers": [],
    "proxy": f"http://127.0.0.1:{PROXY_PORT}",
    "tunnel": TUNNEL_DIR,
    "proxy_port": PROXY_PORT,
}


def qemu_netdev(forward_command: str | None) -> str:
    """QEMU's ``-netdev`` value: restricted user networking whose one way out is the
    proxy forward (none at all without one)."""
    netdev = "user,id=net0,restrict=on,ipv6=off"
    if forward_command is not None:
        escaped = forward_command.replace(",", ",,")
        netdev += f",guestfwd=tcp:{PROXY_IP}:{PROXY_PORT}-cmd:{escaped}"
    return netdev
