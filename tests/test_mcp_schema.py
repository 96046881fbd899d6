"""What the MCP tool list tells a model (issues 12c and 14): result shapes, annotations that
match what each tool does, patterns/lengths/ranges in the schemas, one-line argument errors,
descriptions written for a model, per-profile instructions; and the same Param rules
enforced for SDK callers. No sandbox boots here: every refused call fails before one could.
"""

from __future__ import annotations

import asyncio
import re
import typing
from typing import Any

import pytest
from mcp.server.fastmcp.exceptions import ToolError

from pyro_mcp import Pyro
from pyro_mcp.mcp import schema
from pyro_mcp.mcp.policy import OperatorPolicy
from pyro_mcp.mcp.server import create_server, tools_for_profile
from pyro_mcp.operations.registry import PROFILES

ID = "0123456789ab"
TOOL_NAME = re.compile(r"\b(?:vm|workspace|service|shell|snapshot)_[a-z_]+[a-z]\b")


def list_tools(profile: str = "workspace-full", **policy: Any) -> dict[str, Any]:
    server = create_server(Pyro(), profile=profile, policy=OperatorPolicy.from_args(**policy))
    return {tool.name: tool for tool in asyncio.run(server.list_tools())}


def mcp_error(tool: str, arguments: dict[str, Any], profile: str = "workspace-full") -> str:
    server = create_server(Pyro(), profile=profile)
    with pytest.raises(ToolError) as info:
        asyncio.run(server.call_tool(tool, arguments))
    return str(info.value)


def _fields(node: Any, where: str = "$") -> list[tuple[str, dict[str, Any]]]:
    """Every property schema in an output schema, with its path."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            found.append((f"{where}.{key}", value))
        for key, value in node.items():
            if key != "properties":
                found += _fields(value, f"{where}/{key}")
            else:
                for name, sub in value.items():
                    found += _fields(sub, f"{where}.{name}")
    elif isinstance(node, list):
        for item in node:
            found += _fields(item, where)
    return found


# -- result shapes ------------------------------------------------------------------------------


def test_every_output_field_has_a_type_and_a_description() -> None:
    for name, tool in list_tools().items():
        out = tool.outputSchema
        assert out["additionalProperties"] is False, name
        assert len(out["properties"]) >= 2, name
        for path, field in _fields(out):
            assert field.get("description"), f"{name}: {path} has no description"
            assert "type" in field or "anyOf" in field, f"{name}: {path} has no type"


def test_nested_shapes_are_declared() -> None:
    tools = list_tools()
    listed = tools["workspace_list"].outputSchema["properties"]["workspaces"]["items"]
    assert {"workspace_id", "state", "labels"} <= set(listed["properties"])
    assert listed["additionalProperties"] is False
    ports = tools["service_status"].outputSchema["properties"]["published_ports"]["items"]
    assert set(ports["required"]) == {"host", "host_port", "guest_port", "protocol"}
    envs = tools["vm_list_environments"].outputSchema["properties"]
    assert envs["items"]["items"]["properties"]["name"]["type"] == "string"


def test_sdk_methods_return_the_declared_shapes() -> None:
    """The Pyro methods' return types are the shapes (mypy checks callers against them)."""
    for op in tools_for_profile("workspace-full"):
        shape = schema.result_type(getattr(Pyro, op.name))
        if typing.get_origin(shape) is list:
            (shape,) = typing.get_args(shape)
        assert typing.is_typeddict(shape), op.name


# -- annotations --------------------------------------------------------------------------------

CHANGES_OR_RUNS = {
    "workspace_file_write",
    "workspace_patch_apply",
    "workspace_sync_push",
    "shell_write",
    "service_start",
    "shell_signal",
    "workspace_stop",
    "workspace_exec",
    "workspace_reset",
    "workspace_delete",
}
HOST_PATHS = {
    "workspace_create",
    "workspace_sync_push",
    "workspace_export",
    "workspace_disk_export",
}
RUN_GUEST_CODE = {
    "vm_run",
    "vm_create",
    "vm_exec",
    "workspace_exec",
    "service_start",
    "shell_write",
}


def test_destructive_hints_match_what_tools_do() -> None:
    tools = list_tools()
    for name in CHANGES_OR_RUNS:
        assert tools[name].annotations.destructiveHint is True, name
    for name, tool in tools.items():
        if tool.annotations.readOnlyHint:
            assert tool.annotations.destructiveHint is False, name


def test_open_world_means_host_paths_or_a_network() -> None:
    closed = list_tools()  # default operator policy: no network
    assert {n for n, t in closed.items() if t.annotations.openWorldHint} == HOST_PATHS
    networked = list_tools(network_ceiling="egress")
    opened = {n for n, t in networked.items() if t.annotations.openWorldHint}
    assert opened == HOST_PATHS | RUN_GUEST_CODE | {"workspace_create"}


# -- input schemas ------------------------------------------------------------------------------


def test_ids_and_names_carry_their_patterns() -> None:
    for name, tool in list_tools().items():
        props = tool.inputSchema["properties"]
        for key in ("workspace_id", "vm_id", "shell_id"):
            if key in props:
                assert props[key]["pattern"] == "^[0-9a-f]{12}$", (name, key)
    tools = list_tools()
    name_pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
    assert tools["snapshot_create"].inputSchema["properties"]["name"]["pattern"] == name_pattern
    assert tools["service_start"].inputSchema["properties"]["service_name"]["pattern"]


def test_lengths_ranges_and_item_shapes_are_in_the_schema() -> None:
    tools = list_tools()

    def prop(tool: str, name: str) -> dict[str, Any]:
        return tools[tool].inputSchema["properties"][name]

    assert prop("workspace_file_write", "text")["maxLength"] == 1024 * 1024
    assert prop("workspace_patch_apply", "patch")["maxLength"] == 1024 * 1024
    assert prop("workspace_exec", "command")["maxLength"] == 128 * 1024 - 1
    assert prop("vm_exec", "command")["maxLength"] == 128 * 1024 - 1
    assert prop("service_logs", "tail_lines")["maximum"] == 1_000_000
    assert prop("service_start", "ready_timeout_seconds")["maximum"] == 86400
    ports = prop("service_start", "published_ports")["anyOf"][0]["items"]
    assert ports["additionalProperties"] is False
    assert ports["properties"]["guest_port"] == {"type": "integer", "minimum": 1, "maximum": 65535}
    secrets = prop("workspace_create", "secrets")["anyOf"][0]["items"]
    assert secrets["type"] == "string" and secrets["pattern"]


def test_reset_offers_snapshot_only_where_snapshots_exist() -> None:
    core = list_tools("workspace-core")
    assert "snapshot_create" not in core
    assert "snapshot" not in core["workspace_reset"].inputSchema["properties"]
    assert "snapshot" in list_tools()["workspace_reset"].inputSchema["properties"]


# -- one-line errors, the same on both surfaces ------------------------------------------------

REFUSED = [
    ("vm_run", "run_in_vm", {"environment": "debian:12", "command": "true", "vcpu_count": 99}),
    ("shell_open", "open_shell", {"workspace_id": ID, "cols": 0}),
    ("shell_read", "read_shell", {"workspace_id": ID, "shell_id": ID, "max_chars": 0}),
    ("shell_read", "read_shell", {"workspace_id": ID, "shell_id": ID, "wait_for_idle_ms": 10001}),
    ("service_logs", "logs_service", {"workspace_id": ID, "name": "web", "tail_lines": 0}),
    (
        "workspace_file_read",
        "read_workspace_file",
        {"workspace_id": ID, "path": "a", "max_bytes": 0},
    ),
    (
        "workspace_disk_read",
        "read_workspace_disk",
        {"workspace_id": ID, "path": "a", "max_bytes": 2**21},
    ),
    (
        "workspace_file_write",
        "write_workspace_file",
        {"workspace_id": ID, "path": "a", "text": "é" * 600_000},
    ),
    (
        "workspace_exec",
        "exec_workspace",
        {"workspace_id": ID, "command": "true", "timeout_seconds": 0},
    ),
    (
        "service_start",
        "start_service",
        {"workspace_id": ID, "name": "web", "command": "true", "ready_interval_ms": 5},
    ),
    (
        "service_start",
        "start_service",
        {"workspace_id": ID, "name": "web", "command": "true", "ready_timeout_seconds": 1e9},
    ),
]


@pytest.mark.parametrize(("tool", "method", "arguments"), REFUSED)
def test_param_rules_refuse_the_same_way_over_sdk_and_mcp(tool, method, arguments) -> None:
    with Pyro() as pyro, pytest.raises(ValueError) as info:
        getattr(pyro, method)(**arguments)
    sdk = str(info.value)
    assert "\n" not in sdk
    renamed = {
        "service_name" if k == "name" and tool.startswith("service") else k: v
        for k, v in arguments.items()
    }
    error = mcp_error(tool, renamed)
    assert "\n" not in error and "pydantic" not in error, error
    assert error.endswith(sdk), (error, sdk)


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("vm_run", {"environment": "debian:12"}, "command is required"),
        (
            "vm_run",
            {"environment": "debian:12", "command": "true", "vcpu_count": "x"},
            "vcpu_count must be an integer between 1 and 8",
        ),
        (
            "workspace_file_read",
            {"workspace_id": ID, "path": "a", "encoding": "latin1"},
            "encoding: input should be 'utf-8' or 'base64' (got 'latin1')",
        ),
        (
            "service_start",
            {
                "workspace_id": ID,
                "service_name": "w",
                "command": "x",
                "published_ports": [{"guest_port": "x"}],
            },
            "published_ports.0.guest_port: input should be a valid integer",
        ),
        (
            "workspace_update",
            {"workspace_id": ID, "labels": ["a"]},
            "labels: input should be a valid dictionary (got ['a'])",
        ),
    ],
)
def test_other_argument_errors_are_one_line(tool, arguments, expected) -> None:
    error = mcp_error(tool, arguments)
    assert expected in error
    assert "\n" not in error and "errors.pydantic.dev" not in error, error


# -- descriptions and instructions ------------------------------------------------------------

CLI_SYNTAX = re.compile(r"\bCLI\b|``|--[a-z]+-?[a-z]* [A-Z]|KEY=VALUE|last_activity_at|pure read")


@pytest.mark.parametrize("profile", PROFILES)
def test_descriptions_are_written_for_a_model(profile: str) -> None:
    for name, tool in list_tools(profile).items():
        texts = [tool.description or ""] + [
            p.get("description", "") for p in tool.inputSchema["properties"].values()
        ]
        for text in texts:
            assert not CLI_SYNTAX.search(text), f"{name}: {text!r}"


def test_cli_help_keeps_its_own_wording(run_pyro) -> None:
    """The CLI-only notes moved to ``Param(cli_help=...)``: the CLI still shows them."""
    created = run_pyro("workspace", "create", "--help")
    assert "(CLI: --label KEY=VALUE, repeatable)" in " ".join(created.stdout.split())
    assert "--secret-file NAME=PATH" in " ".join(created.stdout.split())
    written = run_pyro("workspace", "shell", "write", "--help")
    assert "--no-newline turns it off" in " ".join(written.stdout.split())
    service = run_pyro("workspace", "service", "start", "--help")
    assert "The CLI exits 1 when the service failed." in service.stdout


@pytest.mark.parametrize("profile", PROFILES)
def test_instructions_name_the_profiles_tools_only(profile: str) -> None:
    server = create_server(Pyro(), profile=profile)
    text = server.instructions or ""
    named = set(TOOL_NAME.findall(text))
    offered = {op.mcp_name for op in tools_for_profile(profile)}
    assert named <= offered, named - offered
    needed = {
        "vm-run": {"vm_run"},
        "workspace-core": {"workspace_create", "workspace_exec", "workspace_delete"},
        "workspace-full": {"service_start", "shell_open", "snapshot_create", "workspace_exec"},
    }[profile]
    assert needed <= named
    assert "commands always run in a sandbox" in text
    assert "allow-host-compat" not in text  # nothing suggests weakening isolation
