"""Egress rules: which hosts a guest may name, and which addresses it may never reach.

A name is checked against the workspace's ``allow_hosts`` (exact names and ``*.suffix``),
then resolved on the host; the proxy connects only to an address that passed
``denied_address``, so a name that later resolves elsewhere (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import ValidationError

MAX_ALLOW_HOSTS = 64
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
# Never reachable from a guest, whatever the allowlist says.
_DENIED_NETWORKS: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified address"),
    ("10.0.0.0/8", "private address"),
    ("100.64.0.0/10", "shared (carrier-grade NAT) address"),
    ("127.0.0.0/8", "loopback address"),
    ("169.254.0.0/16", "link-local address (cloud metadata)"),
    ("172.16.0.0/12", "private address"),
    ("192.0.0.0/24", "IETF protocol address"),
    ("192.168.0.0/16", "private address"),
    ("198.18.0.0/15", "benchmarking address"),
    ("224.0.0.0/4", "multicast address"),
    ("240.0.0.0/4", "reserved address"),
    ("::/128", "unspecified address"),
    ("::1/128", "loopback address"),
    ("fc00::/7", "private address"),
    ("fe80::/10", "link-local address"),
    ("fec0::/10", "site-local address"),
    ("ff00::/8", "multicast address"),
)
_NETWORKS = [(ipaddress.ip_network(net), why) for net, why in _DENIED_NETWORKS]
POLICY_FILE = "policy.json"


def network_dir(workspace_root: Path) -> Path:
    """Where a workspace keeps its allowlist, egress log and proxy socket."""
    return workspace_root / "network"


def allow_hosts(value: Any, what: str = "allow_hosts") -> list[str]:
    """Validate an allowlist: a list of host names, each exact or ``*.suffix``."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise ValidationError(f"{what} must be a list of host names")
    if len(value) > MAX_ALLOW_HOSTS:
        raise ValidationError(f"{what} takes at most {MAX_ALLOW_HOSTS} names")
    clean: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ValidationError(f"{what} must be a list of host names")
        name = item.strip().lower().rstrip(".")
        bare = name[2:] if name.startswith("*.") else name
        if len(bare) > 253 or not _NAME_RE.match(bare) or "*" in bare:
            raise ValidationError(
                f"{what}: {item!r} is not a host name (use example.com or *.example.com)"
            )
        if name not in clean:
            clean.append(name)
    return clean


def host_allowed(host: str, allowed: list[str]) -> bool:
    """True if ``host`` is named by the allowlist (an empty allowlist allows every name)."""
    if not allowed:
        return True
    name = host.lower().rstrip(".")
    for entry in allowed:
        if entry.startswith("*."):
            if name.endswith(entry[1:]):
                return True
        elif name == entry:
            return True
    return False


def denied_address(address: str, own: frozenset[str] = frozenset()) -> str | None:
    """Why the guest may not reach ``address`` (a resolved IP), or None if it may."""
    ip = ipaddress.ip_address(address.split("%", maxsplit=1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if str(ip) in own:
        return "the host's own address"
    for network, why in _NETWORKS:
        if ip.version == network.version and ip in network:
            return why
    return None


def host_addresses() -> frozenset[str]:
    """Every address configured on this host's interfaces (from /proc, no tools needed)."""
    found: set[str] = set()
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        lines = []
    for before, line in itertools.pairwise(lines):
        if "/32 host LOCAL" in line:
            found.add(before.strip().split()[-1])
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            found.add(str(ipaddress.ip_address(bytes.fromhex(raw))))
    except (OSError, ValueError, IndexError):
        pass
    return frozenset(found)


def save(directory: Path, hosts: list[str]) -> None:
    """Write the allowlist where the workspace's proxy reads it on every connection."""
    directory.mkdir(mode=0o700, exist_ok=True)
    tmp = directory / f"{POLICY_FILE}.tmp{os.getpid()}"
    tmp.write_text(json.dumps({"allow_hosts": hosts}))
    tmp.replace(directory / POLICY_FILE)


def load(directory: Path) -> list[str]:
    """The saved allowlist ([] when none was set). Raises ValueError if it is unreadable:
    the proxy then refuses everything rather than guess."""
    try:
        text = (directory / POLICY_FILE).read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ValueError(f"the allowlist cannot be read ({exc.strerror})") from None
    try:
        return allow_hosts(json.loads(text).get("allow_hosts"))
    except (ValueError, AttributeError):
        raise ValueError("the allowlist file is damaged") from None
