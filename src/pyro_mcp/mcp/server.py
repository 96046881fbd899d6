"""Build the FastMCP server for a profile from the operation declarations."""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Annotated, Any

import anyio
from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations
from pydantic import Field

from ..jsonsafe import json_safe
from ..operations.registry import PROFILES, Operation, ParamInfo, collect
from ..version import __version__

if typing.TYPE_CHECKING:
    from ..api import Pyro

SERVER_NAME = "pyro_mcp"
INSTRUCTIONS = (
    "pyro-mcp runs commands in disposable, isolated Linux sandboxes. Use vm_run for one-shot "
    "commands. Nothing you run can touch the host; host files are only visible when they are "
    "explicitly seeded or synced in."
)


def _annotation(param: ParamInfo) -> Any:
    meta = param.meta
    base = param.annotation
    if meta.choices:
        base = typing.Literal[meta.choices]
    field = Field(description=meta.help, ge=meta.ge, le=meta.le, gt=meta.gt)
    return Annotated[base, field]


def tool_signature(op: Operation, profile: str) -> inspect.Signature:
    parameters = [
        inspect.Parameter(
            p.meta.mcp_name or p.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if p.required else p.default,
            annotation=_annotation(p),
        )
        for p in op.mcp_params(profile)
    ]
    return inspect.Signature(parameters, return_annotation=dict[str, Any])


def _make_tool(pyro: Pyro, op: Operation, profile: str) -> Any:
    method = getattr(pyro, op.name)

    renames = {p.meta.mcp_name: p.name for p in op.params if p.meta.mcp_name}

    async def tool(**kwargs: Any) -> dict[str, Any]:
        kwargs = {renames.get(key, key): value for key, value in kwargs.items()}
        # Tools block (boots, commands): run them off the event loop so calls overlap.
        result = await anyio.to_thread.run_sync(functools.partial(method, **kwargs))
        if isinstance(result, list):
            result = {"count": len(result), "items": result}
        return typing.cast(dict[str, Any], json_safe(result))

    tool.__name__ = op.mcp_name or op.name
    tool.__doc__ = op.description
    tool.__signature__ = tool_signature(op, profile)  # type: ignore[attr-defined]
    return tool


# The order tools are listed in: PRODUCT_SPEC §3's, the workspace-core tools first (a model
# reads the list top down). A tool missing here is listed last; a test keeps this complete.
TOOL_ORDER = (
    "vm_run",
    "workspace_create",
    "workspace_list",
    "workspace_update",
    "workspace_status",
    "workspace_sync_push",
    "workspace_exec",
    "workspace_logs",
    "workspace_file_list",
    "workspace_file_read",
    "workspace_file_write",
    "workspace_patch_apply",
    "workspace_diff",
    "workspace_export",
    "workspace_reset",
    "workspace_delete",
    "vm_list_environments",
    "vm_create",
    "vm_start",
    "vm_exec",
    "vm_stop",
    "vm_delete",
    "vm_status",
    "vm_network_info",
    "vm_reap_expired",
    "workspace_stop",
    "workspace_start",
    "workspace_disk_export",
    "workspace_disk_list",
    "workspace_disk_read",
    "snapshot_create",
    "snapshot_list",
    "snapshot_delete",
    "service_start",
    "service_list",
    "service_status",
    "service_logs",
    "service_stop",
    "shell_open",
    "shell_read",
    "shell_write",
    "shell_signal",
    "shell_close",
    "workspace_network_log",
)


def tools_for_profile(profile: str) -> list[Operation]:
    from ..api import Pyro

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    ops = [op for op in collect(Pyro) if op.mcp_name and profile in op.profiles]
    rank = {name: index for index, name in enumerate(TOOL_ORDER)}
    return sorted(ops, key=lambda op: rank.get(op.mcp_name or "", len(rank)))


def create_server(pyro: Pyro, *, profile: str = "workspace-full") -> FastMCP:
    ops = tools_for_profile(profile)
    server = FastMCP(SERVER_NAME, instructions=INSTRUCTIONS, log_level="WARNING")
    server._mcp_server.version = __version__
    for op in ops:
        server.add_tool(
            _make_tool(pyro, op, profile),
            name=op.mcp_name,
            description=op.description,
            annotations=ToolAnnotations(
                readOnlyHint=op.read_only,
                destructiveHint=op.destructive,
                idempotentHint=op.idempotent,
                openWorldHint=False,
            ),
            structured_output=True,
        )
    return server
