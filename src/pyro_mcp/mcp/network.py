"""The operator's network ceiling for an MCP server (``pyro mcp serve --network-ceiling POLICY
--allow-host NAME…``): the most network a model's sandboxes may get.

A model may narrow within it, never widen:

- ``network_policy`` (workspace_create) and ``network`` (vm_run, vm_create) above the ceiling
  are refused. The default ceiling is ``off``: a model gets no network unless the operator
  says so.
- ``allow_hosts`` a model gives must each be within the operator's list (``a.example.com``
  and ``*.a.example.com`` are within ``*.example.com``). No model list, or an empty one, means
  "as much as allowed": the operator's list. No operator list: any public host (the proxy
  still refuses loopback, private, link-local and the host's own addresses).
- One-shot VMs have no allowlist, so with an operator list ``network`` is refused for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError
from ..network import policy as egress
from ..workspaces.records import NETWORK_POLICIES

DEFAULT_CEILING = "off"
_POLICY_HELP = {
    "off": "off (no network)",
    "egress": "egress (outbound to public hosts through a proxy)",
    "egress+published-ports": "egress+published-ports (also services' published ports)",
}


def _within(entry: str, allowed: Sequence[str]) -> bool:
    """True if every host ``entry`` names is named by ``allowed`` (a non-empty list)."""
    if not entry.startswith("*."):
        return egress.host_allowed(entry, list(allowed))
    return any(other.startswith("*.") and entry[1:].endswith(other[1:]) for other in allowed)


@dataclass(frozen=True)
class NetworkCeiling:
    policy: str = DEFAULT_CEILING
    allow_hosts: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, ceiling: str | None, hosts: Sequence[str] | None) -> NetworkCeiling:
        ceiling = ceiling or DEFAULT_CEILING
        if ceiling not in NETWORK_POLICIES:
            raise ValidationError(
                f"--network-ceiling must be one of: {', '.join(NETWORK_POLICIES)}"
            )
        try:
            clean = egress.allow_hosts(list(hosts or []))
        except ValidationError as exc:
            raise ValidationError(
                f"--allow-host: {str(exc).removeprefix('allow_hosts: ')}"
            ) from None
        if clean and ceiling == "off":
            raise ValidationError(
                "--allow-host needs --network-ceiling egress or egress+published-ports"
            )
        return cls(ceiling, tuple(clean))

    @property
    def policies(self) -> tuple[str, ...]:
        """The network policies a model may ask for, narrowest first."""
        return NETWORK_POLICIES[: NETWORK_POLICIES.index(self.policy) + 1]

    @property
    def hosts_text(self) -> str:
        return ", ".join(self.allow_hosts) or "any public host"

    def describe(self) -> str:
        """For the server instructions: what a model's sandboxes may reach."""
        if self.policy == "off":
            return "Network: none; sandboxes this server creates have no network access."
        return (
            f"Network: this server allows at most network_policy {self.policy!r} "
            f"({', '.join(self.policies)}); egress reaches only {self.hosts_text} through a "
            "proxy (never loopback, private, link-local or the host's own addresses)."
        )

    def help(self, role: str, text: str) -> str:
        """A network parameter's description, naming only what this server allows."""
        if role == "network_policy":
            shown = " or ".join(_POLICY_HELP[name] for name in self.policies)
            return f"The workspace's network, as this server allows: {shown}."
        if role == "allow_hosts":
            if self.policy == "off":
                return "Hosts the guest may reach: none, this server allows no network."
            return (
                "Hosts the guest may reach through its egress proxy: exact names or *.suffix, "
                f"within what this server allows ({self.hosts_text}); unset or []: all of it."
            )
        if self.policy == "off":
            return "Outbound network for the guest: this server allows none (false only)."
        if self.allow_hosts:
            return (
                "Outbound network for the guest: this server allows egress only to listed "
                "hosts, which a one-shot VM cannot hold to (false only)."
            )
        return f"{text} This server allows at most {self.policy!r}."

    def _refuse_above(self, what: str) -> ValidationError:
        return ValidationError(
            f"{what}: the operator sets this server's network ceiling; it allows at most "
            f"{self.policy!r}"
        )

    def check_policy(self, value: Any) -> None:
        if value in NETWORK_POLICIES and value not in self.policies:
            raise self._refuse_above(f"network_policy {value!r}")

    def check_network(self, tool: str, value: Any) -> None:
        if value is not True:
            return
        if self.policy == "off":
            raise self._refuse_above("network")
        if self.allow_hosts:
            raise ValidationError(
                f"network: {tool} cannot hold its guest to a host list, and this server allows "
                f"egress only to {self.hosts_text}"
            )

    def hosts(self, value: Any) -> list[str]:
        """A model's allowlist held to the operator's: refused if it names more, filled in
        with the operator's list when empty."""
        if self.policy == "off":
            raise self._refuse_above("allow_hosts")
        asked = egress.allow_hosts(value)
        if not self.allow_hosts:
            return asked
        outside = [entry for entry in asked if not _within(entry, self.allow_hosts)]
        if outside:
            raise ValidationError(
                f"allow_hosts: {', '.join(outside)} not within what the operator allows "
                f"({self.hosts_text})"
            )
        return asked or list(self.allow_hosts)

    def check_copy(self, tool: str, status: dict[str, Any]) -> None:
        """A new workspace that copies an existing one's network (a fork) gets no more
        than the ceiling either, whatever the source was given under an earlier one."""
        policy = status.get("network_policy", "off")
        if policy not in self.policies:
            raise self._refuse_above(f"{tool}: the workspace's network_policy {policy!r}")
        hosts = status.get("allow_hosts") or []
        if policy != "off" and self.allow_hosts:
            outside = [entry for entry in hosts if not _within(entry, self.allow_hosts)]
            if outside or not hosts:
                raise ValidationError(
                    f"{tool}: the workspace reaches {', '.join(outside) or 'any host'}, beyond "
                    f"what the operator allows ({self.hosts_text})"
                )

    def arguments(self, roles: dict[str, str], tool: str, kwargs: dict[str, Any]) -> None:
        """Check (and fill in) one call's network arguments in place. ``roles``: the call's
        network parameters by role, with their defaults as ``kwargs`` values when omitted."""
        if "network" in roles:
            self.check_network(tool, kwargs.get(roles["network"]))
        hosts = roles.get("allow_hosts")
        if "network_policy" in roles:  # creating: the workspace gets at most the ceiling
            network_policy = kwargs.get(roles["network_policy"], "off")
            self.check_policy(network_policy)
            if hosts and (network_policy != "off" or kwargs.get(hosts)):
                kwargs[hosts] = self.hosts(kwargs.get(hosts))
        elif hosts and kwargs.get(hosts) is not None:  # updating: only when asked
            kwargs[hosts] = self.hosts(kwargs[hosts])
