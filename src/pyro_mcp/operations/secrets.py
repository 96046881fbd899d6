"""Workspace secrets after create: add or rotate one (issue 15)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

from ..workspaces.secret_set import set_secret
from .base import OperationsBase
from .registry import FULL, HumanOutput, Param, operation
from .workspaces import WorkspaceId

if TYPE_CHECKING:
    from .results import SecretSet

# Over MCP the parameters marked mcp_role="operator" come from the operator's declaration
# of the named secret (mcp/policy.py), never from a model.


def _render(data: dict[str, Any]) -> HumanOutput:
    secret = data["secret"]
    hosts = ",".join(secret.get("hosts", [])) or "-"
    return HumanOutput(
        stdout=f"[workspace-secret] workspace_id={data['workspace_id']} name={secret['name']} "
        f"mode={data['mode']} hosts={hosts} replaced={data['replaced']}\n"
    )


SecretValue = Annotated[
    str | None,
    Param(
        "The new value.",
        cli_help="The new value (prefer --file).",
        cli_group="source",
        mcp_role="operator",
    ),
]

SecretFilePath = Annotated[
    str | None,
    Param(
        "Read the value from this host file.",
        cli="--file",
        metavar="PATH",
        cli_group="source",
        mcp_role="operator",
    ),
]

SecretHosts = Annotated[
    list[str] | None,
    Param(
        "Broker it: the hosts the egress proxy adds it for (the guest sees only a placeholder).",
        cli_help="Broker it: the hosts the egress proxy adds it for (the guest sees "
        "only a placeholder). Repeatable.",
        cli="--host",
        cli_append=True,
        metavar="HOST",
        mcp_role="operator",
    ),
]

SecretHeader = Annotated[
    str | None, Param("Header it goes in (default Authorization).", mcp_role="operator")
]

SecretFormat = Annotated[
    str | None,
    Param("How the header is written (default 'Bearer {value}').", mcp_role="operator"),
]


class SecretOperations(OperationsBase):
    @operation(
        mcp="workspace_secret_set",
        cli=("workspace", "secret", "set"),
        profiles=FULL,
        render=_render,
    )
    def set_workspace_secret(
        self,
        workspace_id: WorkspaceId,
        name: Annotated[
            str,
            Param(
                "The secret's name (over MCP: one the operator declared).",
                cli="positional",
                metavar="NAME",
                mcp_role="secret_name",
            ),
        ],
        value: SecretValue = None,
        file_path: SecretFilePath = None,
        hosts: SecretHosts = None,
        header: SecretHeader = None,
        format: SecretFormat = None,
    ) -> SecretSet:
        """Add or rotate one secret without a restart: a brokered value counts from the next
        request the proxy sees; a plain one is installed in the running guest."""
        item = {"name": name, "value": value, "file_path": file_path, "hosts": hosts}
        return cast(
            "SecretSet",
            set_secret(self._ws(workspace_id), {**item, "header": header, "format": format}),
        )
