"""What the operator of an MCP server decides and a model cannot (``pyro mcp serve`` flags).

- Isolation: only ``--allow-host-compat`` lets the server run unisolated; no tool offers it.
- Host paths: every host-path argument is held to the ``--host-root`` directories
  (:mod:`pyro_mcp.hostpaths`).
- Network: ``--network-ceiling POLICY --allow-host NAME…`` is the most network a model's
  sandboxes may get (:mod:`pyro_mcp.mcp.network`); default: none.
- Secrets: declared at start (``--secret NAME=@FILE`` or ``--secret NAME`` from the server's
  environment, ``--secret-host NAME=HOST`` to broker it — the default: a plain secret needs
  ``--secret-plain NAME``); tools take their names only, so a
  model never handles a value. A brokered secret (the recommended mode) never enters the
  guest either: the egress proxy adds it for its hosts. A file is read again at each use, so
  the operator rotates it by rewriting the file (``workspace_secret_set`` takes it in).

Parameters opt in with ``Param(mcp_role=...)``; this is the one place that acts on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ValidationError
from ..hostpaths import HostRoots
from ..operations.registry import Operation, ParamInfo
from ..workspaces import secrets as secret_store
from .network import NetworkCeiling

NETWORK_ROLES = ("network_policy", "network", "allow_hosts")

HOST_COMPAT_NOTICE = (
    "This server was started with --allow-host-compat: when no sandbox engine works, "
    "commands run directly on the host with NO isolation."
)
# What each profile is for, naming the tools its stories use (mcp/server.py's profiles).
_RUN = (
    "vm_run runs one command in a fresh sandbox (environment debian:12) and deletes it; read "
    "stdout, stderr and exit_code (124: timed out)."
)
_CORE = (
    "For work that spans several steps, create a workspace (a sandbox that keeps /workspace): "
    "workspace_create (seed_path copies a host directory in), workspace_exec to run commands, "
    "workspace_file_list/workspace_file_read to look, workspace_file_write and "
    "workspace_patch_apply to edit, workspace_diff to review changes against the seed, "
    "workspace_export to copy a result out to the host, workspace_reset to start over, and "
    "workspace_delete when done."
)
_FULL = (
    " Also: service_start/service_status/service_logs/service_stop for long-running "
    "processes; shell_open, shell_write, shell_read for interactive programs; snapshot_create "
    "and workspace_reset with snapshot for checkpoints; workspace_stop/workspace_start (files "
    "are kept, processes end); workspace_network_log for what the guest reached."
)
PROFILE_GUIDES = {
    "vm-run": _RUN,
    "workspace-core": f"{_CORE} vm_run is for one-shot commands.",
    "workspace-full": f"{_CORE}{_FULL} vm_run is for one-shot commands.",
}
DECLARE_FORMS = "--secret NAME=@FILE or --secret NAME (read from the server's environment)"


SECRET_FIELDS = ("value", "file_path", "hosts", "header", "format")


def _operator_secrets(
    given: Sequence[str] | None,
    hosts: Sequence[str] | None,
    plain: Sequence[str] | None,
    environ: Mapping[str, str],
) -> tuple[dict[str, Any], ...]:
    items: list[dict[str, Any]] = []
    for item in given or []:
        name, sep, rest = item.partition("=")
        if sep and not rest.startswith("@"):
            raise ValidationError(
                f"--secret {name}: expected {DECLARE_FORMS}; a value on the command line "
                "would show in the process list"
            )
        if sep:
            items.append({"name": name, "file_path": rest[1:]})
        elif name in environ:
            items.append({"name": name, "value": environ[name]})
        else:
            raise ValidationError(f"--secret {name}: the server's environment has no {name}")
    items = secret_store.merge_bindings(
        [*items, *secret_store.parse_cli(list(hosts or []), "hosts")]
    )
    secret_store.resolve(items)  # every declaration checked (and each file read) now
    _brokered_by_default(items, plain or ())
    return tuple(items)


def _brokered_by_default(items: list[dict[str, Any]], plain: Sequence[str]) -> None:
    """Over MCP a secret is brokered unless the operator opts it into the guest by name."""
    names = {item["name"] for item in items}
    for name in plain:
        if name not in names:
            raise ValidationError(f"--secret-plain {name}: no --secret {name} is declared")
    for item in items:
        if not item.get("hosts") and item["name"] not in plain:
            raise ValidationError(
                f"--secret {item['name']}: bind it with --secret-host {item['name']}=HOST "
                f"(brokered: the sandbox holds only a placeholder) or pass --secret-plain "
                f"{item['name']} (its value enters the sandbox)"
            )


@dataclass(frozen=True)
class OperatorPolicy:
    roots: HostRoots
    allow_host_compat: bool = False
    secrets: tuple[dict[str, Any], ...] = field(default=(), repr=False)  # values: never shown
    network: NetworkCeiling = field(default_factory=NetworkCeiling)

    @classmethod
    def from_args(
        cls,
        host_roots: Sequence[str] | None = None,
        allow_host_compat: bool = False,
        secrets: Sequence[str] | None = None,
        *,
        secret_hosts: Sequence[str] | None = None,
        plain_secrets: Sequence[str] | None = None,
        network_ceiling: str | None = None,
        allow_hosts: Sequence[str] | None = None,
        cwd: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> OperatorPolicy:
        return cls(
            HostRoots.for_server(host_roots, cwd),
            bool(allow_host_compat),
            _operator_secrets(
                secrets, secret_hosts, plain_secrets, os.environ if environ is None else environ
            ),
            NetworkCeiling.from_args(network_ceiling, allow_hosts),
        )

    @property
    def secret_names(self) -> list[str]:
        return [item["name"] for item in self.secrets]

    @property
    def plain_secret_names(self) -> list[str]:
        """Declared without hosts: their values enter the guest (the weaker mode)."""
        return [item["name"] for item in self.secrets if not item.get("hosts")]

    def describe_secrets(self) -> str:
        parts = [
            f"{item['name']} (brokered: added by the egress proxy for "
            f"{', '.join(item['hosts'])}; the sandbox holds a placeholder)"
            if item.get("hosts")
            else item["name"]
            for item in self.secrets
        ]
        return ", ".join(parts) or "none"

    def declared(self, name: Any) -> dict[str, Any]:
        """The SDK secret item of a declared secret (a file is read again where it is used)."""
        for item in self.secrets:
            if item["name"] == name:
                return dict(item)
        declared = ", ".join(self.secret_names) or "none"
        raise ValidationError(
            f"unknown secret {name!r}: the operator declared {declared} "
            f"(pyro mcp serve {DECLARE_FORMS})"
        )

    def instructions(self, profile: str = "workspace-full") -> str:
        isolation = (
            HOST_COMPAT_NOTICE
            if self.allow_host_compat
            else "Nothing you run can touch the host: commands always run in a sandbox."
        )
        names = self.describe_secrets()
        secrets = (
            f" Secrets the operator declared (pass their names; you never see values): {names}."
            if profile != "vm-run"
            else ""
        )
        host_files = (
            " Host files are only visible when they are explicitly seeded or synced in, and "
            f"results reach the host only by export. {self.roots.describe()}"
            if profile != "vm-run"
            else ""
        )
        return (
            "pyro-mcp runs commands in disposable, isolated Linux sandboxes. "
            f"{PROFILE_GUIDES[profile]} {isolation}{host_files} {self.network.describe()}"
            f"{secrets}"
        )

    def help(self, param: ParamInfo) -> str:
        role = param.meta.mcp_role
        if role == "host_path":
            return f"{param.meta.help} {self.roots.describe()}"
        if role in ("secret_names", "secret_name"):
            names = self.describe_secrets()
            return (
                "Names of secrets the operator declared at server start (here: "
                f"{names}); map them into commands with secret_env. Values are never shown."
            )
        if role in NETWORK_ROLES:
            return self.network.help(role, param.meta.help)
        return param.meta.help

    def choices(self, param: ParamInfo) -> tuple[str, ...] | None:
        """The choices a model is shown (network policies: those within the ceiling)."""
        if param.meta.mcp_role == "network_policy":
            return self.network.policies
        return param.meta.choices

    def annotation(self, param: ParamInfo) -> Any:
        return list[str] | None if param.meta.mcp_role == "secret_names" else param.annotation

    def arguments(
        self,
        op: Operation,
        kwargs: dict[str, Any],
        network_of: Callable[[str], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A model's arguments for one call (SDK names) as the SDK gets them: operator
        settings filled in, secret names resolved, network held to the ceiling (also the
        network a new workspace copies from another, read with ``network_of``: a fork)."""
        roles: dict[str, str] = {}
        for param in op.params:
            source = kwargs.get(param.name)
            if param.meta.mcp_role == "network_source" and source and network_of:
                self.network.check_copy(op.mcp_name or op.name, network_of(source))
            if param.meta.mcp_role == "operator":
                kwargs[param.name] = self.operator_value(param)
            elif param.name in kwargs:
                kwargs[param.name] = self.argument(param, kwargs[param.name])
            if param.meta.mcp_role in NETWORK_ROLES:
                roles[param.meta.mcp_role] = param.name
            if param.meta.mcp_role == "secret_name":
                roles["secret_name"] = param.name
        if "secret_name" in roles:  # the rest of the secret is the operator's declaration
            declared = self.declared(kwargs.get(roles.pop("secret_name")))
            kwargs.update((key, declared.get(key)) for key in SECRET_FIELDS)
        if roles:
            self.network.arguments(roles, op.mcp_name or op.name, kwargs)
        return kwargs

    def argument(self, param: ParamInfo, value: Any) -> Any:
        """The SDK value for a model's argument (secret names become the operator's secrets)."""
        if param.meta.mcp_role != "secret_names" or value is None:
            return value
        return [self.declared(name) for name in value]

    def operator_value(self, param: ParamInfo) -> Any:
        if param.name == "allow_host_compat":
            return self.allow_host_compat
        if param.name in SECRET_FIELDS:  # filled in from the declaration (secret_name)
            return None
        raise ValueError(f"no operator setting for {param.name}")

    def mark(self, result: dict[str, Any]) -> dict[str, Any]:
        """Every result says so when the operator allowed unisolated runs."""
        if self.allow_host_compat:
            result.setdefault("warning", HOST_COMPAT_NOTICE)
        return result
