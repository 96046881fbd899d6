"""Build the FastMCP server for a profile from the operation declarations."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.fastmcp import FastMCP
from pydantic import Field, model_validator

from .. import hostpaths
from ..errors import PyroError
from ..jsonsafe import json_safe
from ..operations.registry import PROFILES, REQUIRED, Operation, ParamInfo, collect
from ..version import __version__
from . import schema
from .direct import DIRECT_ATTR
from .policy import OperatorPolicy
from .progress import run_tool
from .reply import CallToolResult, OutputCheck, tool_result

if typing.TYPE_CHECKING:
    from ..api import Pyro

SERVER_NAME = "pyro_mcp"


def _annotation(param: ParamInfo, policy: OperatorPolicy) -> Any:
    meta = param.meta
    base = policy.annotation(param)
    extra: dict[str, Any] | None = None
    if meta.choices:
        base = typing.Literal[meta.choices]
        shown = policy.choices(param)
        if shown != meta.choices:  # the schema shows what the operator allows; a value
            extra = {"enum": list(shown or ())}  # beyond it gets the policy's one-line refusal
    field = Field(
        description=policy.help(param),
        ge=meta.ge,
        le=meta.upper(),
        gt=meta.gt,
        json_schema_extra=extra,
    )
    return Annotated[base, field]


def _mcp_default(param: ParamInfo) -> Any:
    return param.default if param.meta.mcp_default is REQUIRED else param.meta.mcp_default


def tool_signature(
    op: Operation, profile: str, policy: OperatorPolicy | None = None
) -> inspect.Signature:
    policy = policy or OperatorPolicy.from_args()
    parameters = [
        inspect.Parameter(
            p.meta.mcp_name or p.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if p.required else _mcp_default(p),
            annotation=_annotation(p, policy),
        )
        for p in op.mcp_params(profile)
    ]
    return inspect.Signature(parameters, return_annotation=dict[str, Any])


def _call(policy: OperatorPolicy, op: Operation, method: Any, kwargs: dict[str, Any]) -> Any:
    """One tool call, in a worker thread, under the operator's policy."""
    network_of = method.__self__.manager.workspaces.network_of  # method: bound to a Pyro
    with hostpaths.confined(policy.roots):
        return method(**policy.arguments(op, kwargs, network_of))


def _answer(
    call: functools.partial[Any],
    policy: OperatorPolicy,
    check: OutputCheck,
    send: Callable[[CallToolResult], None] | None,
) -> CallToolResult:
    """The call and its whole answer, in the worker thread; ``send`` (if the transport
    takes one) writes it at once (reply.py)."""
    result = call()
    if isinstance(result, list):
        result = {"count": len(result), "items": result}
    answer = tool_result(policy.mark(typing.cast(dict[str, Any], json_safe(result))), check)
    if send is not None:
        send(answer)
    return answer


class RefusedArgument(PyroError):
    """A tool argument no schema offers (not a ValueError: pydantic would bury it in its
    multi-line report; this way the model reads one line)."""


def _refuse_unknown_arguments(server: FastMCP, op: Operation, profile: str) -> None:
    """An operator's setting passed as an argument (allow_host_compat) is refused, never
    silently dropped: a model that passes one learns that it did nothing. Secret arguments
    take names only. (Other arguments a profile does not offer are ignored, as before.)"""
    name = op.mcp_name or op.name
    operator_only = {p.name for p in op.params if p.meta.mcp_role == "operator"}
    secret_fields = [
        p.meta.mcp_name or p.name
        for p in op.mcp_params(profile)
        if p.meta.mcp_role == "secret_names"
    ]
    tool = server._tool_manager.get_tool(name)
    assert tool is not None
    base = tool.fn_metadata.arg_model
    offered = sorted(field.alias or key for key, field in base.model_fields.items())

    class Strict(base):  # type: ignore[misc,valid-type]
        @model_validator(mode="before")
        @classmethod
        def _only_offered(cls, data: Any) -> Any:
            if isinstance(data, dict):
                unknown = sorted(operator_only & set(data))
                if unknown:
                    raise RefusedArgument(
                        f"unknown argument {', '.join(map(repr, unknown))}: {name} takes "
                        f"{', '.join(offered) or 'no arguments'}"
                    )
                for key in secret_fields:
                    if isinstance(data.get(key), list) and not all(
                        isinstance(item, str) for item in data[key]
                    ):
                        raise RefusedArgument(
                            f"{key} takes secret names only: the operator declares secrets "
                            "when starting the server; a model never passes values or files"
                        )
            return data

    Strict.__name__ = base.__name__
    tool.fn_metadata.arg_model = Strict


def _make_tool(
    pyro: Pyro, op: Operation, profile: str, policy: OperatorPolicy, server: FastMCP
) -> Any:
    method = getattr(pyro, op.name)
    check = OutputCheck(server, op.mcp_name or op.name)  # the reply is built whole (reply.py)

    renames = {p.meta.mcp_name: p.name for p in op.params if p.meta.mcp_name}

    def start(
        kwargs: dict[str, Any], send: Callable[[CallToolResult], None] | None
    ) -> Callable[[], CallToolResult]:
        """The call and its answer, for a worker thread (``send``: writes it at once)."""
        kwargs = {renames.get(key, key): value for key, value in kwargs.items()}
        call = functools.partial(_call, policy, op, method, kwargs)
        return functools.partial(_answer, call, policy, check, send)

    async def tool(**kwargs: Any) -> CallToolResult:
        # Tools block (boots, commands): run them off the event loop so calls overlap,
        # reporting progress and ending early when the client cancels (progress.py).
        ctx = server.get_context()
        return await run_tool(start(kwargs, None), ctx)

    setattr(tool, DIRECT_ATTR, start)  # the stdio fast path's way in (direct.py)

    tool.__name__ = op.mcp_name or op.name
    tool.__doc__ = op.description
    tool.__signature__ = tool_signature(op, profile, policy)  # type: ignore[attr-defined]
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
    "workspace_fork",  # in workspace-core since 3.7.0 (issue 13)
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
    "workspace_secret_set",
)


def tools_for_profile(profile: str) -> list[Operation]:
    from ..api import Pyro

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    ops = [op for op in collect(Pyro) if op.mcp_name and profile in op.profiles]
    rank = {name: index for index, name in enumerate(TOOL_ORDER)}
    return sorted(ops, key=lambda op: rank.get(op.mcp_name or "", len(rank)))


def create_server(
    pyro: Pyro, *, profile: str = "workspace-full", policy: OperatorPolicy | None = None
) -> FastMCP:
    """``policy``: the operator's settings (default: no host compat, no secrets, the start
    directory as the host root when it may be one)."""
    policy = policy or OperatorPolicy.from_args()
    ops = tools_for_profile(profile)
    server = FastMCP(SERVER_NAME, instructions=policy.instructions(profile), log_level="WARNING")
    server._mcp_server.version = __version__
    for op in ops:
        server.add_tool(
            _make_tool(pyro, op, profile, policy, server),
            name=op.mcp_name,
            description=schema.description(op),
            annotations=schema.tool_annotations(op, profile, policy),
            structured_output=True,
        )
        _refuse_unknown_arguments(server, op, profile)
        schema.finish_tool(server, op, profile, RefusedArgument)
    return server
