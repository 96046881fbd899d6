"""The guest network a VM engine gives a sandbox with networking (QEMU user networking).

The user network is restricted: the guest reaches nothing but the egress proxy, which QEMU
forwards (``guestfwd``) to the supervisor's proxy (network/proxy.py). The agent configures
the guest side with ``USER_NETWORK``: an address on the subnet, no default route (any
direct connection fails at once), no DNS server (the proxy resolves names), and the proxy
variables for every process it starts. gVisor sandboxes have no guest network yet.
"""

PROXY_IP = "10.0.2.100"
PROXY_PORT = 3128

USER_NETWORK = {
    "guest_ip": "10.0.2.15",
    "gateway_ip": "10.0.2.2",
    "subnet_cidr": "10.0.2.0/24",
    "mac_address": "52:54:00:12:34:56",
    "dns_servers": [],
    "proxy": f"http://{PROXY_IP}:{PROXY_PORT}",
}


def qemu_netdev(forward_command: str | None) -> str:
    """QEMU's ``-netdev`` value: restricted user networking whose one way out is the
    proxy forward (none at all without one)."""
    netdev = "user,id=net0,restrict=on,ipv6=off"
    if forward_command is not None:
        escaped = forward_command.replace(",", ",,")
        netdev += f",guestfwd=tcp:{PROXY_IP}:{PROXY_PORT}-cmd:{escaped}"
    return netdev
