"""The guest network a VM engine gives a sandbox with networking (QEMU user networking).

The agent configures the guest side with it; gVisor sandboxes have no guest network yet.
"""

USER_NETWORK = {
    "guest_ip": "10.0.2.15",
    "gateway_ip": "10.0.2.2",
    "subnet_cidr": "10.0.2.0/24",
    "mac_address": "52:54:00:12:34:56",
    "dns_servers": ["10.0.2.3"],
}
